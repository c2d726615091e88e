"""environment.yml and requirements.txt list the same packages with the same pins; torch is pinned."""
import re

from conftest import ROOT


def _requirements():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {re.sub(r"\s+", "", line.split("#")[0]) for line in lines if line.split("#")[0].strip()}


def _environment_pip():
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("- pip:", 1)[1]
    return {re.sub(r"\s+", "", line.strip()[2:]) for line in pip_block.splitlines() if line.strip().startswith("- ")}


def test_requirements_and_environment_agree():
    assert _requirements() == _environment_pip()


def test_torch_is_pinned_first():
    reqs = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert reqs[0] == "torch==2.13.0"
