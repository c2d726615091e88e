"""Every base settings file in conf/ is valid, and so is every sweep command written in its header."""
import re
import shlex

import pytest

import settings
import sweep
from conftest import ROOT

CONFS = sorted((ROOT / "conf").glob("*.py"))


def _sweep_commands(path):
    text = path.read_text()
    return [shlex.split(match) for match in re.findall(r"^# (python sweep\.py .*?)$(?<!\\)",
                                                       text.replace("\\\n#", ""), re.M | re.S)]


@pytest.mark.parametrize("path", CONFS, ids=[p.name for p in CONFS])
def test_conf_is_valid(path):
    values = settings.load_file(path)
    if values.get("pretrained_path") and not (ROOT / values["pretrained_path"]).exists():
        with pytest.raises(settings.SettingsError, match="pretrained_path"):
            settings.build(values)  # refused with a message saying what to provide
        return
    settings.build(values)


# the fine-tuning sweeps need weights on disk; their settings are checked by test_conf_is_valid
SWEEPS = [(p, i) for p in CONFS if not settings.load_file(p).get("pretrained_path")
          for i in range(len(_sweep_commands(p)))]


@pytest.mark.parametrize("path, which", SWEEPS, ids=[f"{p.name}-{i}" for p, i in SWEEPS])
def test_documented_sweep_is_valid(path, which):
    args = sweep.parse_args(_sweep_commands(path)[which][2:])
    plan = sweep.collect(sweep.ScriptedAsker(sweep.flags_to_answers(str(ROOT / args.base), args.vary)), yes=True)
    assert plan.job_count == len(sweep.grid(plan)) > 1


LONG = [p for p in CONFS if (settings.load_file(p).get("n_steps") or 0) >= 1_000_000]


@pytest.mark.parametrize("path", LONG, ids=[p.name for p in LONG])
def test_a_run_of_a_million_steps_checkpoints_so_that_a_requeued_job_resumes(path):
    """A run of days outlives a SLURM job's time limit; without a checkpoint each requeue starts at step 0 and
    the run fails after submitit's last requeue (the kg paper confs did)."""
    s = settings.build(settings.load_file(path))
    assert s.checkpoint_every_steps and s.checkpoint_every_steps < s.n_steps
