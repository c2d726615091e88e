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


@pytest.mark.parametrize("flags, throttle", [([], "%4"), (["--max-parallel", "2"], "%2")])
def test_a_slurm_array_has_no_parallelism_limit_unless_asked(flags, throttle, tiny_base, tmp_path, monkeypatch):
    import os

    import sweep
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\ncp \"$1\" \"$(dirname \"$0\")/submitted.sh\"\necho 'Submitted batch job 7'\n")
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit checks that srun exists
    for tool in ("sbatch", "srun"):
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # a 2-core login node must not throttle the array to 2
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0x4", "--executor", "slurm", "--yes", *flags]) == 0
    assert f"#SBATCH --array=0-3{throttle}\n" in (fake / "submitted.sh").read_text()


def test_local_sweeps_still_default_to_one_job_per_core():
    import os

    import sweep
    assert sweep.parse_args(["--executor", "local"]).max_parallel == (os.cpu_count() or 1)
