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
