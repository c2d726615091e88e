import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The smallest real run: a 1-layer BLOOM on 20/20 strings for 2 epochs (well under a second).
TINY = dict(task="target_functions", target_func="func10", sequence_length=8, train_set_size=20,
            test_set_size=20, model="bloom", n_layer=1, n_head=2, n_embd=16, batch_size=10, n_epochs=2,
            eval_every=1, lr=1e-2, eta_min=1e-4, data_cache=False, progress="off")


def write_settings(path, values):
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    return path



def fake_slurm(tmp_path, monkeypatch, job=777, listed=""):
    """SLURM's commands on PATH as stand-ins: sbatch keeps the script it was given (bin/submitted.sh) and
    answers job `job`; srun exists (submitit checks for it); squeue lists `listed`. Returns the bin folder."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "sbatch").write_text("#!/bin/sh\ncp \"$1\" \"$(dirname \"$0\")/submitted.sh\"\n"
                                 f"echo 'Submitted batch job {job}'\n")
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "squeue").write_text(f"#!/bin/sh\nprintf '{listed}'\n")
    for tool in ("sbatch", "srun", "squeue"):
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    return fake

@pytest.fixture
def tiny_base(tmp_path):
    return write_settings(tmp_path / "base.py", TINY)


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder, so results_new/ and .cache/ never leak between tests."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests (as the runs default to), restored afterwards."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
