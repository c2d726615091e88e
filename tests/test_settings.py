"""Settings files and validation: every mistake is named, with what would be valid."""
import json
import subprocess
import sys

import pytest

import settings
from conftest import ROOT, TINY, write_settings


def test_python_and_json_files_load_the_same(tmp_path):
    py = write_settings(tmp_path / "a.py", TINY)
    js = tmp_path / "a.json"
    js.write_text(json.dumps(TINY))
    assert settings.load(py) == settings.load(js)


def test_comments_docstring_arithmetic_and_curly_quotes(tmp_path):
    path = tmp_path / "s.py"
    path.write_text('"""doc"""\n# a comment\ntarget_func = \u2019func7\u2019  # why\ntest_set_size = 10 * 100\n')
    s = settings.load(path)
    assert (s.target_func, s.test_set_size) == ("func7", 1000)


def test_unknown_name_suggests_the_closest(tmp_path):
    path = write_settings(tmp_path / "s.py", {"lrr": 0.1, "targte_func": "func7"})
    with pytest.raises(settings.SettingsError) as err:
        settings.load(path)
    text = str(err.value)
    assert "unknown setting 'lrr'" in text and "did you mean 'lr'" in text
    assert "did you mean 'target_func'" in text  # both problems reported at once


def test_wrong_type_names_setting_and_expected_type():
    with pytest.raises(settings.SettingsError, match=r"lr = 'fast' has the wrong type: expected float"):
        settings.build({"lr": "fast"})
    with pytest.raises(settings.SettingsError, match="n_epochs"):
        settings.build({"n_epochs": 2.5})
    with pytest.raises(settings.SettingsError, match="wrong type"):
        settings.build({"n_epochs": True})  # a bool is not an int here


def test_conversions_that_lose_nothing():
    s = settings.build({"lr": 1, "n_epochs": 1e1, "n_layer": None})
    assert s.lr == 1.0 and isinstance(s.lr, float)
    assert s.n_epochs == 10 and isinstance(s.n_epochs, int)
    assert s.n_layer is None


@pytest.mark.parametrize("values, needle", [
    ({"batch_size": -1}, "batch_size = -1 is below its minimum 0"),
    ({"device": "gpu"}, "device = 'gpu' is not one of"),
    ({"train_set_size": 201}, "train_set_size = 201 must be even"),
    ({"eta_min": 0.1, "lr": 0.01}, "eta_min = 0.1 is larger than lr"),
    ({"target_func": "func5"}, "func5"),
    ({"target_func": "fucn7"}, "func7"),
    ({"model": "qwen17B"}, "model = 'qwen17B' is unknown"),
    ({"task": "grokking"}, "unknown task 'grokking'"),
    ({"model": "qwen3_finetune"}, "pretrained_path"),
    # rotary embeddings rotate pairs of dimensions: an odd head size crashed in training (3), or ran (1)
    ({"model": "qwen1.7B", "n_layer": 2, "n_embd": 128, "head_dim": 3}, "head_dim=3 must be even"),
    ({"model": "qwen1.7B", "n_layer": 2, "n_embd": 128, "head_dim": 1}, "head_dim=1 must be even"),
    # a head size the user did not set is said to come from n_embd // n_head
    ({"model": "qwen1.7B", "n_layer": 2, "n_embd": 32, "n_head": 32, "n_kv_head": 8},
     "head_dim=1 (n_embd // n_head = 32 // 32: set head_dim, or an n_head that leaves an even head size) must be"),
])
def test_impossible_values_are_refused(values, needle):
    with pytest.raises(settings.SettingsError) as err:
        settings.build(values)
    assert needle in str(err.value)


def test_non_literal_line_is_refused_with_its_line(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("lr = 0.1\nimport os\nseed = os.getpid()\n")
    with pytest.raises(settings.SettingsError) as err:
        settings.load(path)
    assert "line 2" in str(err.value) and "line 3" in str(err.value)


def test_written_config_loads_back_identically(tmp_path):
    s = settings.build({**TINY, "n_kv_head": None, "lr": 3e-4})
    path = tmp_path / "config.py"
    path.write_text(settings.to_python(s, header="header\nline"))
    assert settings.load(path) == s


def test_overrides_parse_and_apply(tmp_path):
    s = settings.load(write_settings(tmp_path / "s.py", TINY), dict([settings.parse_override("lr=0.5")]))
    assert s.lr == 0.5
    with pytest.raises(settings.SettingsError):
        settings.parse_override("lr")


def test_main_reports_a_mistake_without_traceback(tmp_path):
    path = write_settings(tmp_path / "s.py", {**TINY, "batchsize": 4})
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", str(path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "did you mean 'batch_size'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results_new").exists()  # refused before any work


def test_a_settings_file_setting_a_name_twice_is_refused_and_a_byte_order_mark_is_read_past(tmp_path):
    doubled = tmp_path / "doubled.py"
    doubled.write_text("task = 'group_arithmetic'\nlr = 0.01\nn_epochs = 2\nlr = 0.02\n")
    with pytest.raises(settings.SettingsError, match=r"line 4: lr is set a second time \(first on line 2\)"):
        settings.load_file(doubled)
    marked = tmp_path / "marked.py"
    marked.write_bytes(b"\xef\xbb\xbftask = 'group_arithmetic'\nn_epochs = 2\n")  # what some editors save
    assert settings.load_file(marked) == {"task": "group_arithmetic", "n_epochs": 2}


def test_another_task_s_settings_under_a_changed_task_are_named_in_one_line():
    values = {"task": "group_arithmetic", "target_func": "func7", "sequence_length": 8, "n_embd": 16}
    with pytest.raises(settings.SettingsError) as error:
        settings.build(values)
    assert len(error.value.problems) == 1
    assert ("settings target_func, sequence_length, n_embd belong to task 'target_functions', not to task "
            "'group_arithmetic'") in error.value.problems[0]
    with pytest.raises(settings.SettingsError) as error:  # a lone misspelling keeps its suggestion
        settings.build({"task": "group_arithmetic", "lrr": 0.1})
    assert "did you mean 'lr'?" in error.value.problems[0]


def test_a_folder_given_as_the_settings_file_is_named_a_folder(tmp_path):
    with pytest.raises(settings.SettingsError, match="is a folder, not a settings file"):
        settings.load_file(tmp_path)


def test_a_problem_across_settings_is_reported_with_a_problem_of_one_setting():
    # n_embd out of range and lr = 0 below the default eta_min: both at once, not the second on the next try
    with pytest.raises(settings.SettingsError) as err:
        settings.build({"n_embd": -16, "lr": 0.0})
    text = str(err.value)
    assert "n_embd = -16 is below its minimum" in text and "eta_min = 1e-05 is larger than lr = 0.0" in text
    # a check across settings that names the invalid one (here n_embd at its default) is left out
    with pytest.raises(settings.SettingsError) as err:
        settings.build({"n_embd": -16})
    assert len(err.value.problems) == 1


@pytest.mark.parametrize("values, note", [
    ({"task": "kg_reasoning", "kind": "comparison", "out_degree": 50, "n_relations": 60},
     "n_relations = 60 has no effect with kind = 'comparison'"),
    ({"task": "kg_reasoning", "kind": "composition", "n_values": 5}, "n_values = 5 has no effect with kind = 'composition'"),
    ({"task": "parity_cot", "secret": [0, 1, 2, 3, 4, 5], "secret_rule": "seed"},
     "secret_rule = 'seed' has no effect: secret = [0, 1, 2, 3, 4, 5] is given"),
    ({"task": "parity_cot", "train_eval_size": 100}, "train_eval_size = 100 has no effect on a stream"),
    ({"task": "group_arithmetic", "load_dataset_split": "SPLIT", "use_critical_ratio": True},
     "use_critical_ratio has no effect: the split is read from load_dataset_split = 'SPLIT'"),
])
def test_a_setting_another_one_makes_irrelevant_is_noted_not_refused(values, note, tmp_path, monkeypatch):
    """So that a sweep can vary the setting that switches it off (README); these were silently ignored."""
    import torch
    monkeypatch.chdir(tmp_path)
    torch.save({"train_indices": [0, 1, 2], "test_indices": [3, 4]}, tmp_path / "SPLIT")
    s = settings.build(values)
    assert any(n.startswith(note) for n in s.notes()), s.notes()
    base = {k: v for k, v in values.items() if k in ("task", "kind")}
    assert not any(n.startswith(note.split(" ")[0]) for n in settings.build(base).notes())


def test_a_misspelled_name_does_not_hide_the_problems_the_checks_across_settings_find():
    """'every problem at once': an unknown model was said only after the misspelling was mended."""
    with pytest.raises(settings.SettingsError) as err:
        settings.build({"lr": -1.0, "batch_sise": 3, "model": "gpt3"})
    text = str(err.value)
    assert "lr = -1.0 is below its minimum" in text and "did you mean 'batch_size'" in text
    assert "model = 'gpt3' is unknown" in text
