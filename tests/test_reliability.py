"""Faults a user meets (issue 'Reliability as a user meets it'): each test fails without its fix."""
import pytest
import torch

import main
import results
import settings
from conftest import fake_slurm


@pytest.mark.parametrize("stop, code", [(KeyboardInterrupt(), 130), (main.Terminated(), 143)])
def test_a_stop_while_the_settings_load_exits_cleanly(stop, code, monkeypatch, capsys):
    # the settings import the task module, which imports torch: seconds in which Ctrl-C or kill land
    def interrupted(*args, **kwargs):
        raise stop

    monkeypatch.setattr(settings, "load", interrupted)
    assert main.main([]) == code
    assert "before the run started; nothing was written" in capsys.readouterr().err


@pytest.mark.parametrize("name, value, words", [
    ("lr", float("inf"), "not a finite number"),
    ("weight_decay", float("nan"), "not a finite number"),
    ("seed", -1, "below its minimum 0"),
    ("seed", 2 ** 70, "above its maximum"),
])
def test_values_that_would_fail_at_run_time_are_refused_at_validation(name, value, words):
    with pytest.raises(settings.SettingsError, match=words):
        settings.build({name: value})


def test_cuda_without_a_gpu_is_refused_before_a_folder_is_made(tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without one, wherever this runs
    assert main.main(["--set", "device='cuda'", "--results-root", str(tmp_path / "r")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, throttle", [([], "%4"), (["--max-parallel", "2"], "%2")])
def test_a_slurm_array_has_no_parallelism_limit_unless_asked(flags, throttle, tiny_base, tmp_path, monkeypatch):
    import os

    import sweep
    fake = fake_slurm(tmp_path, monkeypatch)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # a 2-core login node must not throttle the array to 2
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0x4", "--executor", "slurm", "--yes", *flags]) == 0
    assert f"#SBATCH --array=0-3{throttle}\n" in (fake / "submitted.sh").read_text()


def test_local_sweeps_still_default_to_one_job_per_core():
    import os

    import sweep
    assert sweep.parse_args(["--executor", "local"]).max_parallel == (os.cpu_count() or 1)


def test_resume_takes_the_sweep_folders_path_as_report_does(tiny_base, tmp_path):
    import sweep
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes"]) == 0
    # the tests run in tmp_path: "results_new/0" is the path report.py takes, relative to here
    assert sweep.main(["--resume", "results_new/0"]) == 0


def test_ctrl_d_at_a_question_is_a_message_not_a_traceback(monkeypatch, capsys):
    import questionary

    import sweep

    class Ended:
        def unsafe_ask(self):
            raise EOFError

    monkeypatch.setattr(questionary, "text", lambda *a, **k: Ended())
    with pytest.raises(sweep.SweepError, match="Ctrl-D"):
        sweep.QuestionaryAsker().ask("?", validate=None)


def test_report_piped_into_head_ends_quietly(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT
    sweep_folder = tmp_path / "7"
    for n in range(6000):  # a table (~240 kB) far larger than a pipe's buffer: report.py writes after head exits
        run = sweep_folder / str(n)
        run.mkdir(parents=True)
        (run / "status.json").write_text(json.dumps({"state": "done"}))
        (run / "summary.json").write_text(json.dumps({"final": {"step": 3, "test_accuracy": 0.5}}))
    shell = f"{sys.executable} {ROOT / 'report.py'} {sweep_folder} | head -n 2"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0 and done.stdout.count("\n") == 2


def test_fp16_autocast_where_the_run_is_on_a_cpu_is_refused_not_run_in_float32_under_its_name(tmp_path, capsys):
    # Accelerate has no fp16 autocast on a CPU: the run trained in float32 and recorded fp16
    assert main.main(["--set", "n_epochs=1", "--set", "mixed_precision='fp16'", "--set", "device='cpu'",
                      "--results-path", str(tmp_path / "run")]) == 2
    assert "mixed_precision = 'fp16' does not exist on a CPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    import training  # a sweep's worker builds the run without main's checks: the accelerator refuses it
    with pytest.raises(settings.SettingsError, match="'fp16' does not exist on a CPU"):
        training.make_accelerator(settings.build({"mixed_precision": "fp16", "device": "cpu"}))


def test_help_settings_piped_into_head_ends_quietly():
    import subprocess
    import sys

    from conftest import ROOT
    shell = f"{sys.executable} {ROOT / 'main.py'} --help-settings --config {ROOT / 'conf' / 'kg_reasoning_cpu.py'} | head -n 2"
    for _ in range(3):  # the pipe closes before or after the interpreter's last flush, by chance
        done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert done.returncode == 0 and done.stdout.count("\n") == 2


def test_a_run_started_in_the_background_by_a_script_stops_on_kill_int(tmp_path):
    """A script's `python main.py ... &` inherits SIGINT ignored: kill -INT must still stop the run (marked
    interrupted, exit 130), as it stops a sweep started so."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--set", "n_epochs=100000", "--set", "eval_every=10",
                             "--results-path", str(run)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"


def test_help_settings_of_an_unknown_task_names_the_valid_ones(capsys):
    assert main.main(["--help-settings", "--set", "task='group_arithmetc'"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'group_arithmetic'" in err and "Traceback" not in err


def test_help_settings_lists_the_allowed_choices(capsys):
    assert main.main(["--help-settings", "--set", "task='group_arithmetic'"]) == 0
    out = capsys.readouterr().out
    assert "one of: 'modular_addition', 'modular_multiplication'" in out


def test_a_setting_made_irrelevant_is_noted_not_refused(tmp_path, capsys):
    # the conf sets critical_ratio_multiplier; a sweep over use_critical_ratio must be able to switch it off
    from conftest import ROOT
    code = main.main(["--config", str(ROOT / "conf" / "group_arithmetic_cpu.py"), "--set", "use_critical_ratio=False",
                      "--set", "n_epochs=2", "--set", "lr_milestones=[5]", "--results-path", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    log = (tmp_path / "run" / "logs.log").read_text()
    assert "note: critical_ratio_multiplier = 2.75 has no effect unless use_critical_ratio = True" in log
    assert "note: lr_milestones = [5] has no effect with lr_schedule = 'none'" in log
    import json
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["notes"]) == 2


def _fake_run(folder, status, accuracy):
    import json
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "config.json").write_text(json.dumps({"seed": int(folder.name)}))
    if accuracy is not None:
        (folder / "summary.json").write_text(json.dumps({"final": {"epoch": 3, "test_accuracy": accuracy}}))


def test_report_shows_a_killed_run_as_dead_and_groups_over_finished_runs_only(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    import report
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    sweep_folder = tmp_path / "3"
    _fake_run(sweep_folder / "0", {"state": "done"}, 1.0)
    _fake_run(sweep_folder / "1", {"state": "done"}, 0.5)
    _fake_run(sweep_folder / "2", {"state": "running", "host": socket.gethostname(), "pid": gone.pid}, None)
    (sweep_folder / "2" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_accuracy": 0.0}) + "\n")
    _fake_run(sweep_folder / "3", {"state": "failed", "error": "boom"}, 0.0)
    (sweep_folder / "sweep.json").write_text(json.dumps({"runs": [{"overrides": {"seed": i}} for i in range(4)]}))
    table = report.rows(sweep_folder)
    assert [r["status"] for r in table] == ["done", "done", "dead", "failed"]
    assert "gone" in table[2]["error"]
    grouped = report.group_rows(table, ["seed"])
    assert grouped[0]["runs"] == 4 and grouped[0]["done"] == 2
    assert grouped[0]["test_accuracy_mean"] == pytest.approx(0.75)


@pytest.fixture
def unwritable(tmp_path):
    """A folder no one can write into, even root: its parent is a file."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    return blocker / "results"


@pytest.mark.parametrize("flag", ["--results-root", "--results-path"])
def test_main_refuses_an_unwritable_results_folder_in_one_line(flag, unwritable, capsys):
    assert main.main(["--set", "n_epochs=1", flag, str(unwritable)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write into {unwritable}" in err and flag in err and "Traceback" not in err
    assert f"{unwritable.parent} is a file, not a folder" in err  # (the system's words: 'Not a directory')


@pytest.mark.parametrize("kind", ["sweep", "user files", "a model's folder", "a list", "a results root",
                                  "main.py's experiment folder"])
def test_main_refuses_a_results_path_that_holds_something_else_than_a_run(kind, tmp_path, capsys):
    # a sweep's folder (its runs would vanish from report.py behind the stray run's files) or a folder of
    # the user's own files (config.py, metrics.jsonl would be overwritten; a model folder's config.json, or
    # any config.json that is no run's, was taken for a run's and overwritten): refused, nothing touched
    folder = tmp_path / "there"
    folder.mkdir()
    if kind == "sweep":
        (folder / "sweep.json").write_text('{"runs": 2}')
        (folder / "0").mkdir()
    mine = {"config.py": "my precious notes\n", "metrics.jsonl": "mine\n"}
    if kind == "a results root":  # --results-path results_new: sweeps 3 and 4 under it
        for sweep_id in ("3", "4"):
            (folder / sweep_id / "0").mkdir(parents=True)
            (folder / sweep_id / "sweep.json").write_text('{"runs": []}')
        mine = {}
    if kind == "main.py's experiment folder":  # results_new/<id>, holding its run 0/
        (folder / "0").mkdir()
        (folder / "0" / "status.json").write_text('{"state": "done"}')
        mine = {}
    if kind == "a model's folder":
        mine = {"config.json": '{"model_type": "bloom", "n_layer": 2}'}
    if kind == "a list":
        mine = {"config.json": "[1, 2]"}
    for name, text in mine.items():
        (folder / name).write_text(text)
    before = sorted(p.name for p in folder.iterdir())
    assert main.main(["--set", "n_epochs=1", "--results-path", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "Traceback" not in err
    assert {"sweep": "holds a sweep (sweep.json)", "user files": "holds config.py, metrics.jsonl but no run",
            "a model's folder": "holds config.json but no run (its config.json is no run's)",
            "a list": "holds config.json but no run (its config.json is no run's)",
            "a results root": "holds runs or sweeps (3, 4): this run's files would hide them from report.py",
            "main.py's experiment folder": "holds runs or sweeps (0)"}[kind] in err
    assert sorted(p.name for p in folder.iterdir()) == before
    assert all((folder / name).read_text() == text for name, text in mine.items())


def test_a_results_path_holding_other_files_than_a_run_s_takes_the_run_beside_them(tmp_path):
    # the log the shell redirects there before main.py starts (> out/train.log), a .gitkeep
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "train.log").write_text("the shell's\n")
    (folder / ".gitkeep").write_text("")
    assert main.main(["--set", "n_epochs=1", "--results-path", str(folder)]) == 0
    assert (folder / "train.log").read_text() == "the shell's\n" and (folder / "summary.json").exists()


def test_a_checkpoint_that_fails_to_load_for_another_reason_is_not_called_damaged(tmp_path, monkeypatch, capsys):
    # out of memory while loading a sound checkpoint: no advice to delete it (that would lose the run's progress)
    import torch
    from conftest import TINY
    from results import RunDir
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_settings(settings.build({**TINY, "n_epochs": 3, "checkpoint_every": 1}))
    run.set_status("interrupted")
    (run.path / "checkpoint.pt").write_bytes(b"sound")

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch, "load", out_of_memory)
    assert main.main(["--config", str(run.file("config.py")), "--results-path", str(run.path)]) == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "Delete it" not in err


def test_a_damaged_checkpoint_is_named_with_the_fix_not_a_traceback(tmp_path, capsys):
    from conftest import TINY
    from results import RunDir
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_settings(settings.build({**TINY, "n_epochs": 3, "checkpoint_every": 1}))
    run.set_status("interrupted")
    (run.path / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    assert main.main(["--config", str(run.file("config.py")), "--results-path", str(run.path)]) == 1
    err = capsys.readouterr().err
    assert "checkpoint.pt cannot be read" in err and "Delete it to train the run again" in err
    assert "Traceback" not in err and (run.path / "checkpoint.pt").exists()  # the user's call, not ours


def test_a_run_folder_resumes_with_its_own_settings_when_no_config_is_given(tmp_path, capsys):
    """`main.py --results-path DIR` on an unfinished run: its own settings, not the embedded defaults (which
    were refused with a list of every difference from another programme's defaults)."""
    import json

    from results import RunDir
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_settings(settings.build({"task": "group_arithmetic", "n_epochs": 3, "eval_every": 1,
                                       "hidden_size": 16, "progress": "off"}))
    run.set_status("interrupted")
    (run.path / "metrics.jsonl").write_text("")
    assert main.main(["--results-path", str(run.path)]) == 0
    summary = json.loads(run.file("summary.json").read_text())
    assert summary["final"]["epoch"] == 3 and "config.json" in capsys.readouterr().err
    assert json.loads(run.file("config.json").read_text())["task"] == "group_arithmetic"
    assert run.status()["attempts"] == 1  # a resume counted, as sweep.py --resume counts it (README)
    fresh = RunDir(tmp_path / "fresh")
    assert main.main(["--set", "n_epochs=1", "--results-path", str(fresh.path)]) == 0
    assert "attempts" not in fresh.status()


def test_a_loss_that_turns_non_finite_fails_in_one_line(tmp_path, capsys):
    assert main.main(["--set", "n_epochs=2", "--set", "lr=1e30", "--set", "max_grad_norm=0",
                      "--results-path", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "training loss became" in err and "try a smaller lr" in err and "Traceback" not in err


def test_a_warmup_longer_than_an_epoch_budget_fails_in_one_line(tmp_path, capsys):
    # the steps of an n_epochs budget are known only once the data is built: a failed run, said in one line
    assert main.main(["--set", "n_epochs=1", "--set", "warmup_steps=1000", "--results-path", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "warmup_steps = 1000 is not shorter than the run's" in err and "lower warmup_steps" in err
    assert "Traceback" not in err and "Traceback" not in (tmp_path / "run" / "logs.log").read_text()


def test_sweep_refuses_an_unwritable_results_root_before_the_questions(tiny_base, unwritable, capsys):
    import sweep
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes",
                       "--results-root", str(unwritable)]) == 2
    assert f"cannot write into {unwritable}" in capsys.readouterr().err


def test_plot_and_report_refuse_an_unwritable_output_in_one_line(tmp_path, unwritable, capsys):
    import plot
    import report
    _fake_run(tmp_path / "5" / "0", {"state": "done"}, 1.0)
    # (a programme that adds notes: assoc_memory; one that has none needs no import there)
    (tmp_path / "5" / "0" / "config.json").write_text('{"task": "assoc_memory", "seed": 0}')
    assert plot.main([str(tmp_path / "5"), "--out", str(unwritable)]) == 2
    assert report.main([str(tmp_path / "5"), "--csv", str(unwritable / "table.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("error: cannot write") == 2 and "Traceback" not in err


def test_report_prints_its_table_where_the_programme_module_cannot_be_imported(tmp_path, monkeypatch, capsys):
    # report.py run by a Python without torch (not the project's environment): the table needs none, the
    # programme's notes do; one line says so instead of a traceback after the table
    import importlib
    import report
    _fake_run(tmp_path / "5" / "0", {"state": "done"}, 0.75)
    # (a programme that adds notes: assoc_memory; one that has none needs no import there)
    (tmp_path / "5" / "0" / "config.json").write_text('{"task": "assoc_memory", "seed": 0}')
    real = importlib.import_module

    def no_torch(name, *args):
        if name.startswith("tasks."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real(name, *args)
    monkeypatch.setattr(importlib, "import_module", no_torch)
    assert report.main([str(tmp_path / "5")]) == 0
    out = capsys.readouterr().out
    assert "0.7500" in out and "notes below the table need torch" in out


def test_a_disk_that_fills_during_a_run_fails_it_in_one_line_and_leaves_no_temporary_file(
        tmp_path, monkeypatch, capsys):
    import errno
    import json
    from pathlib import Path

    write_text = Path.write_text

    def full_for_the_summary(self, *args, **kwargs):
        if self.name.startswith(".summary.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_for_the_summary)
    run = tmp_path / "run"
    assert main.main(["--set", "n_epochs=1", "--set", "data_cache=False", "--results-path", str(run)]) == 1
    err = capsys.readouterr().err
    assert "disk full while writing" in err and str(run / "summary.json") in err
    assert "Traceback" not in err
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "disk full" in status["error"]
    assert not list(run.glob(".*.tmp"))


def test_a_data_cache_the_full_disk_refuses_only_costs_time(tmp_path, monkeypatch):
    import shutil

    import torch

    import tasks.target_functions as tft

    def failing_save(obj, path, *args, **kwargs):
        open(path, "wb").write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 0))
    s = settings.build({"data_cache": True, "train_set_size": 20, "test_set_size": 20})
    split, cached = tft._cached_split(s)
    assert not cached and len(split.y_train) == 20
    assert not [p for p in (tmp_path / ".cache").rglob("*") if p.is_file()]  # neither a cache file nor a .tmp


def test_a_value_the_task_refuses_is_re_asked_at_its_prompt(tiny_base):
    from test_sweep import _interactive
    backspaces = "\x7f" * 20
    keys = [f"{tiny_base}\r", "target_func\r",
            "2x3x4x1\r",                       # a string, so the type passes; no such function: re-asked
            backspaces + "func7\r", "END\r", "END\r", "y\r"]
    outcome = _interactive(keys)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["plan"].vary == [("target_func", [("func7", 1)])]


def test_answers_are_saved_when_the_grid_is_refused_after_the_questions(tiny_base, tmp_path, monkeypatch):
    import sweep
    # a refusal that only the whole grid shows (values fine one by one, impossible together)
    def refuse(plan):
        raise sweep.SweepError("some grid points are impossible; nothing was queued")

    class Person:  # answers typed at the prompts (flags and answers files are not saved again)
        def __init__(self, answers):
            self.typed = sweep.ScriptedAsker(answers)

        def ask(self, *args, **kwargs):
            return self.typed.ask(*args, **kwargs)

    monkeypatch.setattr(sweep, "grid", refuse)
    answers = [str(tiny_base), "lr", "0.1", "END", "END"]
    with pytest.raises(sweep.SweepError) as error:
        sweep.collect(Person(answers + ["y"]))
    message = str(error.value)
    saved = message.split("saved in ")[1].split(":")[0]
    assert (tmp_path / saved).read_text().splitlines() == answers
    assert f"python sweep.py --answers {saved}" in message


def test_the_grid_description_warns_of_a_suffix_read_as_a_count_and_of_repeated_jobs():
    import sweep
    plan = sweep.Plan(base="b.py", base_values={}, settings_class=None,
                      vary=[("target_func", [("func7", 2), ("func10", 1), ("func10", 1)]), ("M", [("2x3", 4)])])
    points = [{"target_func": "func7"}, {"target_func": "func7", "seed": 1}, {"target_func": "func10"},
              {"target_func": "func10"}]
    text = sweep.describe_grid(plan, points)
    assert "grid: target_func: 'func7' x2, 'func10', 'func10' | M: '2x3' x4" in text
    assert "M '2x3' x4 is the value '2x3' repeated 4 times; for the value '2x3x4' write 2x3x4x1" in text
    assert "1 jobs repeat another exactly (same settings and seed): 3 = 2" in text


def test_the_confirmation_question_shows_the_grid(tiny_base):
    import sweep
    asker = sweep.ScriptedAsker([str(tiny_base), "target_func", "func7", "func7", "END", "END", "y"])
    questions = []
    ask = asker.ask
    asker.ask = lambda message, *args, **kwargs: questions.append(message) or ask(message, *args, **kwargs)
    sweep.collect(asker)
    assert questions[-1].startswith("grid: target_func: 'func7', 'func7'\nwarning: 1 jobs repeat another")
    assert questions[-1].endswith(sweep.Q_CONFIRM.format(n=2))


def test_a_multi_line_error_is_one_line_in_the_report(tmp_path):
    import report
    log = "submitit WARNING (2026-12-01) - job 12 was killed\nTraceback (most recent call last):\n  ...\n" \
          "submitit.core.utils.UncompletedJobError: Job 12 (task: 0) with path x has not produced any output"
    _fake_run(tmp_path / "4" / "0", {"state": "failed", "error": log}, None)
    table = report.rows(tmp_path / "4")
    assert table[0]["error"].startswith("submitit.core.utils.UncompletedJobError") and "\n" not in table[0]["error"]
    assert len(report.format_table(table).splitlines()) == 3


def test_a_slurm_resume_reuses_the_submission_and_leaves_runs_slurm_still_holds(tiny_base, tmp_path, monkeypatch,
                                                                                  capsys):
    import json

    import sweep
    from results import RunDir
    fake = fake_slurm(tmp_path, monkeypatch, listed="777_1\\n")
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0x3", "--executor", "slurm", "--yes",
                       "--partition", "long", "--time", "90", "--cpus", "2", "--qos", "low",
                       "--setup", "conda activate lab", "--runs-per-job", "1", "--max-parallel", "2"]) == 0
    folder = tmp_path / "results_new" / "0"
    # run 0 failed; run 1 is trained by array task 777_1 on another node; run 2's job died
    RunDir(folder / "0").set_status("failed", error="boom")
    for name, job in (("1", "777_1"), ("2", "777_2")):
        status = {"state": "running", "host": "node-7", "pid": 4242, "slurm_job": job}
        (folder / name / "status.json").write_text(json.dumps(status))
    (fake / "submitted.sh").unlink()
    assert sweep.main(["--resume", "0", "--time", "120"]) == 0
    script = (fake / "submitted.sh").read_text()
    for line in ("--partition=long", "--time=120", "--cpus-per-task=2", "--qos=low", "conda activate lab"):
        assert line in script, line
    assert "#SBATCH --array=0-1%2" in script  # runs 0 and 2, with the recorded parallelism
    assert json.loads((folder / "sweep.json").read_text())["submissions"][-1]["runs"] == ["0", "2"]
    assert "run 1 (job 777_1)" in capsys.readouterr().err
    assert RunDir(folder / "1").status()["state"] == "running"
    assert RunDir(folder / "0").status()["state"] == RunDir(folder / "2").status()["state"] == "queued"


def test_a_run_started_by_slurm_records_its_job_as_squeue_names_it(tmp_path, monkeypatch):
    from results import RunDir
    monkeypatch.setenv("SLURM_JOB_ID", "999")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "777")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.set_status("running")
    assert run.status()["slurm_job"] == "777_4"


def test_vary_without_base_says_what_is_missing(capsys):
    import sweep
    assert sweep.main(["--vary", "lr=0.1,0.2", "--yes"]) == 2
    assert "--vary needs --base FILE" in capsys.readouterr().err


def test_a_base_file_with_several_problems_fits_the_prompts_line(tmp_path):
    import sweep
    bad = tmp_path / "bad.py"
    bad.write_text("lrr = 0.1\nn_epochz = 3\n")
    problem = sweep._validator(lambda text: sweep.collect(sweep.ScriptedAsker([text]), yes=True))(str(bad))
    assert f"{bad} has 2 problems; the first: unknown setting 'lrr'" in problem
    assert f"see every one with: python main.py --config {bad}" in problem


def test_log_lines_are_written_above_a_progress_bar(tmp_path, monkeypatch):
    import io

    from results import RunDir, run_logger
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    from tqdm import tqdm
    bar = tqdm(total=10, file=err, ascii=True, mininterval=0)
    bar.update(3)
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    log = run_logger(run, echo=True)
    log.info("eval step 3 | test_accuracy 0.5")
    bar.update(1)
    bar.close()
    lines = err.getvalue().replace("\r", "\n").split("\n")
    assert "eval step 3 | test_accuracy 0.5" in lines  # a line of its own, not glued to the bar


def test_a_length_too_short_for_the_set_sizes_is_refused():
    with pytest.raises(settings.SettingsError, match="sequence_length = 3 gives only 8 distinct strings"):
        settings.build({"target_func": "func7", "sequence_length": 3, "train_set_size": 4, "test_set_size": 6})
    settings.build({"target_func": "func7", "sequence_length": 3, "train_set_size": 4, "test_set_size": 4})


# ---- item 9: one `threads` setting for every programme, recorded with the run

def test_every_programme_has_the_common_threads_setting_with_one_thread_by_default():
    import tasks
    for name in tasks.TASK_MODULES:
        field = settings.fields_of(tasks.get(name).Settings)["threads"]
        assert field.default == 1, name
        assert field.metadata["help"] == settings.fields_of(settings.CommonSettings)["threads"].metadata["help"], name


@pytest.mark.parametrize("threads", [1, 2])
def test_a_run_trains_on_the_threads_it_asks_for_and_records_them(threads, tmp_path):
    import json

    import torch

    from conftest import TINY
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert main.main(["--set", f"task={TINY['task']!r}", *[f"--set={k}={v!r}" for k, v in TINY.items()],
                          "--set", f"threads={threads}", "--results-path", str(tmp_path / "run")]) == 0
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["threads"] == threads
        assert f"threads = {threads}" in (tmp_path / "run" / "config.py").read_text()
        assert f"{threads} torch thread" in (tmp_path / "run" / "logs.log").read_text()
    finally:
        torch.set_num_threads(before)


def test_a_worker_gives_a_run_with_threads_0_its_share_whatever_the_run_before_it_set(tmp_path):
    import json

    import torch

    from conftest import TINY
    from results import RunDir
    from worker import Worker
    before = torch.get_num_threads()
    try:
        for name, threads in (("0", 1), ("1", 0)):
            (tmp_path / name).mkdir()
            RunDir(tmp_path / name).write_settings(settings.build({**TINY, "threads": threads}))
        assert Worker(tmp_path, ["0", "1"], "token", threads=2)() == {"0": "done", "1": "done"}
        assert [json.loads((tmp_path / n / "summary.json").read_text())["threads"] for n in "01"] == [1, 2]
    finally:
        torch.set_num_threads(before)


def test_more_threads_than_cores_is_noted(monkeypatch):
    monkeypatch.setattr(settings, "_cores", lambda: 2)
    assert any("more than the 2 cores" in note for note in settings.build({"threads": 4}).notes())
    assert not any("cores" in note for note in settings.build({"threads": 2}).notes())


# ---- item 12: a run too large for the machine is refused before it exhausts it

def test_a_sequence_length_that_cannot_fit_is_refused_before_a_folder_is_made(tmp_path, capsys):
    assert main.main(["--set", "sequence_length=100000", "--results-root", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "this run needs at least" in err and "sequence_length 100,000" in err and "GiB free" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_the_memory_check_compares_the_estimate_with_the_free_memory(monkeypatch):
    import training
    small = settings.build({})
    parts = training.tasks.get("target_functions").memory_estimate(small)
    need = sum(parts.values()) + sum(training.parameter_memory(small).values())
    # the token ids alone: 2,200 strings of 22 int64 ids; the floor of one evaluation batch is larger still
    assert need > 2200 * 22 * 8
    monkeypatch.setattr(training, "free_memory", lambda on_gpu: need - 1)
    with pytest.raises(training.MemoryRefused, match="lower the sizes named"):
        training.check_memory(small)
    monkeypatch.setattr(training, "free_memory", lambda on_gpu: need)
    training.check_memory(small)


def test_a_model_too_large_for_the_machine_is_refused_by_its_parameters_before_a_folder_is_made(tmp_path, capsys):
    # a group MLP of hidden size 2e9: 138e9 parameters, where the batch's activations are what other checks
    # count (without the parameters the allocation failed inside the run, with a traceback)
    from conftest import ROOT
    assert main.main(["--config", str(ROOT / "conf/group_arithmetic_cpu.py"), "--set", "hidden_size=2000000000",
                      "--set", "n_epochs=1", "--results-root", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "138,000,000,529 parameters with their gradients and adam's state" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("optim, states", [("adamw", 2), ("sgd", 1), ("muon", 1)])
def test_the_parameter_memory_is_the_built_models_with_gradients_and_optimiser_state(optim, states):
    import models
    import training
    s = settings.build({"optim": optim})
    model = models.build(s.model_spec())
    count = sum(p.numel() for p in model.parameters())
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())
    (what, size), = training.parameter_memory(s).items()
    assert what.startswith(f"{count:,} parameters") and size == count * 4 * (2 + states)


def test_eager_attention_probabilities_grow_with_the_square_of_the_length():
    import models
    spec = settings.build({"sequence_length": 98, "model": "bloom"}).model_spec()
    floor = models.memory_floor(spec, 10, training=False)
    (probs,) = [size for what, size in floor.items() if what.startswith("attention probabilities")]
    assert probs == 4 * 10 * 4 * 100 ** 2  # float32 x batch x heads x positions^2, one layer at a time
    trained = models.memory_floor(spec, 10, training=True)
    assert sum(trained.values()) > sum(floor.values())


def test_a_sweep_run_too_large_for_its_machine_fails_alone_in_one_line(tmp_path):
    import json

    from conftest import TINY
    from results import RunDir
    from worker import Worker
    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    RunDir(tmp_path / "0").write_settings(settings.build({**TINY, "sequence_length": 100000}))
    RunDir(tmp_path / "1").write_settings(settings.build(TINY))
    assert Worker(tmp_path, ["0", "1"], "token")() == {"0": "failed", "1": "done"}
    status = json.loads((tmp_path / "0" / "status.json").read_text())
    assert status["state"] == "failed" and "this run needs at least" in status["error"]


def test_an_unfinished_run_is_resumed_only_with_its_own_settings(tmp_path, capsys):
    # an interrupted run folder given again with other settings would continue its checkpoint under them (or
    # overwrite its evaluations) while config.py claimed the new ones: refused, naming the settings
    import json
    import main
    from results import RunDir
    run = tmp_path / "run"
    base = ["--set", "n_epochs=2", "--set", "eval_every=1", "--set", "data_cache=False", "--results-path", str(run)]
    assert main.main(base) == 0
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(dict(status, state="interrupted")))  # as a stop leaves it
    (run / "summary.json").unlink()
    before = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main.main(["--set", "lr=0.1", "--set", "target_func='func7'", *base]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run (interrupted) with other settings" in err and "lr 0.001 there, 0.1 now" in err
    assert "target_func 'func10' there, 'func7' now" in err and f"--config {run / 'config.py'}" in err
    assert (run / "metrics.jsonl").read_text() == before and RunDir(run).config()["lr"] == 0.001
    # the same settings resume it; a live process training it is refused
    assert main.main(base) == 0 and RunDir(run).status()["state"] == "done"
    (run / "status.json").write_text("{")  # a finished run whose status was damaged: its summary says finished
    assert main.main(base) == 2 and "already holds a finished run" in capsys.readouterr().err
    (run / "status.json").write_text(json.dumps(dict(status, state="running", pid=1)))  # pid 1: alive, not us
    (run / "summary.json").rename(run / "summary.kept")
    assert main.main(base) == 2
    assert "process 1 on this machine is training" in capsys.readouterr().err
    # another machine's process (a shared file system), heard from a moment ago: refused too
    (run / "status.json").write_text(json.dumps(dict(status, state="running", pid=7, host="another-node",
                                                     heartbeat=results.now())))
    assert main.main(base) == 2
    assert "process 7 on another-node is training (its heartbeat in status.json is" in capsys.readouterr().err


def test_report_on_the_results_root_or_an_empty_folder_says_what_to_give(tmp_path, capsys):
    import report
    from results import atomic_write_json
    for sweep_id in ("0", "1"):
        _fake_run(tmp_path / "root" / sweep_id / "0", {"state": "done"}, 0.5)
        atomic_write_json(tmp_path / "root" / sweep_id / "sweep.json", {"vary": [], "runs": []})
    assert report.main([str(tmp_path / "root")]) == 2
    assert f"holds sweeps (0, 1), not runs; give one: python report.py {tmp_path / 'root' / '1'}" in \
        capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "holds no run folders" in capsys.readouterr().err
    assert report.main([str(tmp_path / "root" / "1")]) == 0  # a sweep folder still reports


def test_report_and_plot_skip_a_damaged_metrics_line_with_a_warning(tmp_path, capsys):
    import json
    import plot
    import report
    run = tmp_path / "5" / "0"
    _fake_run(run, {"state": "interrupted"}, None)
    (run / "config.json").write_text('{"task": "group_arithmetic", "seed": 0}')
    records = [{"epoch": e, "step": e, "samples": e, "train_accuracy": 0.5, "test_accuracy": 0.25 * e} for e in (0, 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"epoch": 2, "ste')
    assert report.main([str(tmp_path / "5")]) == 0
    out = capsys.readouterr()
    assert "0.2500" in out.out and "1 line that is not a JSON record skipped" in out.err
    assert plot.main([str(tmp_path / "5"), "--out", str(tmp_path / "plots")]) == 0
    assert "Traceback" not in capsys.readouterr().err and list((tmp_path / "plots").glob("*.png"))


def test_a_disk_full_to_new_files_still_records_the_failure_and_closes_the_log_quietly(tmp_path, monkeypatch):
    # a disk so full that no temporary file can be made: status.json is rewritten in place (it fits in the
    # block it holds) instead of staying 'running'; closing logs.log, whose last bytes the disk refuses, raises
    # nothing (it printed chained tracebacks after the one-line message)
    import errno
    import json
    import logging

    import results
    run = results.RunDir(tmp_path / "run")
    run.path.mkdir()
    run.set_status("running")

    def full(path, write):
        raise results.ResultsError(f"disk full while writing {path}")
    monkeypatch.setattr(results, "atomic_replace", full)
    run.set_status("failed", error="ResultsError: disk full")
    status = json.loads((run.path / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == "ResultsError: disk full"

    class FullHandler(logging.Handler):
        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")
    log = logging.getLogger("run.full-disk-test")
    log.addHandler(FullHandler())
    results.close_logger(log)
    assert not log.handlers


def test_a_sweep_whose_disk_refuses_the_claims_leaves_its_runs_queued_in_one_line_each(tiny_base, tmp_path,
                                                                                     monkeypatch, capsys):
    # the in-process executor (submitit's DebugExecutor) opened pdb on any exception a worker let out: a claim
    # the full disk refused was one; the claim's temporary file stayed behind
    import errno
    import json as json_module

    import results
    import sweep
    real_dump = json_module.dump

    def full_disk(obj, f, *args, **kwargs):
        if "token" in obj:  # the claim's content
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_dump(obj, f, *args, **kwargs)
    monkeypatch.setattr(results.json, "dump", full_disk)
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("cannot claim run") == 2 and "No space left on device" in captured.err
    assert "re-run what is not done: python sweep.py --resume 0" in captured.out
    folder = tmp_path / "results_new" / "0"
    assert [results.RunDir(folder / n).status()["state"] for n in "01"] == ["queued", "queued"]
    assert not list(folder.rglob(".claim.*"))


def test_grouped_report_leaves_the_spread_of_a_single_run_blank():
    import report
    table = [{"run": "0", "lr": 0.1, "seed": 0, "status": "done", "test_accuracy": 0.5},
             {"run": "1", "lr": 0.1, "seed": 1, "status": "done", "test_accuracy": 0.7},
             {"run": "2", "lr": 0.2, "seed": 0, "status": "done", "test_accuracy": 0.9}]
    one, two = sorted(report.group_rows(table, ["lr", "seed"]), key=lambda r: -r["runs"])
    assert one["test_accuracy_std"] > 0.1 and two["test_accuracy_std"] is None and two["test_accuracy_mean"] == 0.9


def test_report_says_a_damaged_status_is_unreadable_not_missing(tmp_path, capsys):
    import report
    _fake_run(tmp_path / "5" / "0", {"state": "running"}, None)
    (tmp_path / "5" / "0" / "status.json").write_text("{")
    _fake_run(tmp_path / "5" / "1", {"state": "done"}, 0.5)
    (tmp_path / "5" / "1" / "status.json").write_text("{")  # finished: its summary says so
    (tmp_path / "5" / "2").mkdir()
    _fake_run(tmp_path / "5" / "3", {"state": "done"}, 0.5)
    (tmp_path / "5" / "3" / "summary.json").write_text('{"final": ')
    assert [r["status"] for r in report.rows(tmp_path / "5")] == ["unreadable", "done?", "missing", "done"]
    # and says so, instead of a 'done?' or blank columns without a word
    err = capsys.readouterr().err
    assert "5/0/status.json is unreadable (damaged): run 0's state is shown as 'unreadable'" in err
    assert "5/1/status.json is unreadable (damaged)" in err and "5/3/summary.json is unreadable (damaged)" in err
    # a damaged or missing config.json: blank settings, said, with where they come back from
    (tmp_path / "5" / "3" / "config.json").write_text("{")
    (tmp_path / "5" / "1" / "config.json").unlink()
    report.rows(tmp_path / "5")
    err = capsys.readouterr().err
    assert "5/3/config.json is unreadable (damaged): run 3's settings are left blank" in err
    assert "5/1/config.json is missing: run 1's settings are left blank" in err


def test_runs_gathered_without_a_sweep_json_are_told_apart_by_what_their_configs_vary(tmp_path, capsys):
    """Runs copied into a folder of their own (no sweep.json): report.py --group grouped them all as one (a
    mean over different learning rates, or over programmes); the varied settings now come from the configs,
    the task first, and plot.py refuses a mix of programmes in one line."""
    import json

    import plot
    import report
    for n, (task, lr, seed) in enumerate([("group_arithmetic", 0.1, 0), ("group_arithmetic", 0.1, 1),
                                          ("group_arithmetic", 0.2, 0), ("assoc_memory", 0.1, 0)]):
        _fake_run(tmp_path / "mix" / str(n), {"state": "done"}, 0.1 * (n + 1))
        (tmp_path / "mix" / str(n) / "config.json").write_text(json.dumps({"task": task, "lr": lr, "seed": seed,
                                                                           "progress": "off" if n else "on"}))
    assert report.varied_names(tmp_path / "mix") == ["task", "lr", "seed"]
    groups = report.group_rows(report.rows(tmp_path / "mix"), report.varied_names(tmp_path / "mix"))
    assert sorted((g["task"], g["lr"], g["runs"]) for g in groups) == [
        ("assoc_memory", 0.1, 1), ("group_arithmetic", 0.1, 2), ("group_arithmetic", 0.2, 1)]
    assert plot.main([str(tmp_path / "mix")]) == 2
    assert "belong to several programmes (group_arithmetic, e.g. run 0, assoc_memory, e.g. run 3)" in \
        capsys.readouterr().err
    assert report.varied_names(tmp_path / "mix" / "2") == []  # one run's folder varies nothing


def test_report_warns_that_a_damaged_sweep_json_is_set_aside(tmp_path, capsys):
    import report
    _fake_run(tmp_path / "5" / "0", {"state": "done"}, 0.5)
    (tmp_path / "5" / "sweep.json").write_text('{"vary": [{"name": "lr"')
    assert report.main([str(tmp_path / "5")]) == 0
    assert "sweep.json is unreadable (damaged): the varied settings are read from the runs' own configs" in \
        capsys.readouterr().err


def test_a_job_out_of_time_says_so_in_its_runs_and_leaves_the_rest_queued(tmp_path, monkeypatch):
    """submitit's time limit (sweep.py --time): at each, it calls the worker's checkpoint() and requeues the
    job, at most 3 times; then it raises UncompletedJobError in the run. The run's logs.log says what
    happened and from where it will go on; the final failure says what to do; the runs not reached stay
    queued for a resume instead of being trained past the limit."""
    import json

    import submitit

    import training
    from conftest import TINY
    from results import RunDir
    from worker import Worker
    for name in "01":
        (tmp_path / name).mkdir()
        RunDir(tmp_path / name).write_settings(settings.build(TINY))
        RunDir(tmp_path / name).set_status("queued")
    job = Worker(tmp_path, ["0", "1"], "token")

    def out_of_time(*args, **kwargs):
        job.checkpoint()  # what submitit's signal handler calls first
        raise submitit.core.utils.UncompletedJobError("Job not requeued because: timed-out too many times.")
    monkeypatch.setattr(training, "train", out_of_time)
    assert job() == {"0": "failed"}
    status = json.loads((tmp_path / "0" / "status.json").read_text())
    assert "time limit (sweep.py --time) more often" in status["error"] and "raise --time" in status["error"]
    log = (tmp_path / "0" / "logs.log").read_text()
    assert "the job's time limit (sweep.py --time) was reached" in log and "from the start" in log
    assert json.loads((tmp_path / "1" / "status.json").read_text())["state"] == "queued"


def test_a_numbered_folder_that_cannot_be_read_beside_a_results_path_is_no_run(tmp_path, monkeypatch, capsys):
    """The check for runs or sweeps under a --results-path reads numbered subfolders: one it may not read is
    taken for none (a PermissionError traceback otherwise)."""
    import pathlib
    folder = tmp_path / "there"
    (folder / "5").mkdir(parents=True)
    listing = pathlib.Path.iterdir

    def iterdir(self):
        if self.name == "5":
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)
    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    assert main.main(["--set", "n_epochs=1", "--results-path", str(folder)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_python_without_the_project_s_packages_is_told_so_in_one_line_before_any_work(tmp_path, monkeypatch,
                                                                                        capsys):
    """Run outside the project's virtual environment, main.py, sweep.py and plot.py said nothing useful: a
    ModuleNotFoundError traceback from deep inside a task. They name the packages missing and the fix."""
    import importlib.util

    import plot
    import sweep
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numpy" else real(name, *a))
    calls = [lambda: main.main(["--config", "conf/group_arithmetic_cpu.py", "--results-path", str(tmp_path / "run")]),
             lambda: sweep.main(["--base", "conf/group_arithmetic_cpu.py", "--vary", "seed=0", "--yes",
                                 "--results-root", str(tmp_path / "sweeps"), "--executor", "inprocess"]),
             lambda: plot.main([str(tmp_path)])]
    for call in calls:
        assert call() == 2
        err = capsys.readouterr().err
        assert "has no numpy, which the project needs" in err and "pip install torch==2.13.0 -r requirements.txt" in err
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
