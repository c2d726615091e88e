"""Faults a user meets (issue 'Reliability as a user meets it'): each test fails without its fix."""
import pytest

import main
import settings


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


def test_cuda_without_a_gpu_is_refused_before_a_folder_is_made(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # counted as skipped, not passed
    assert main.main(["--set", "device='cuda'", "--results-root", str(tmp_path / "r")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
