"""Every base settings file in conf/ is valid, and the sweep command written at its top is too."""
import re
import shlex

import pytest

import settings
import sweep
from conftest import ROOT

CONFS = sorted((ROOT / "conf").glob("*.py"))


def _sweep_command(path):
    text = path.read_text()
    match = re.search(r"^# (python sweep\.py .*?)$(?<!\\)", text.replace("\\\n#", ""), re.M | re.S)
    return shlex.split(match.group(1)) if match else None


@pytest.mark.parametrize("path", CONFS, ids=[p.name for p in CONFS])
def test_conf_is_valid(path):
    values = settings.load_file(path)
    if values.get("pretrained_path") and not (ROOT / values["pretrained_path"]).exists():
        with pytest.raises(settings.SettingsError, match="pretrained_path"):
            settings.build(values)  # refused with a message saying what to provide
        return
    settings.build(values)


# the fine-tuning sweeps need weights on disk; their settings are checked by test_conf_is_valid
SWEEPS = [p for p in CONFS if _sweep_command(p) and not settings.load_file(p).get("pretrained_path")]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_documented_sweep_is_valid(path):
    args = sweep.parse_args(_sweep_command(path)[2:])
    plan = sweep.collect(sweep.ScriptedAsker(sweep.flags_to_answers(str(ROOT / args.base), args.vary)), yes=True)
    assert plan.job_count == len(sweep.grid(plan)) > 1
