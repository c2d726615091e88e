"""Try each setting of a conf one at a time at its choices and limits, on a tiny budget, and list what fails.

    python scripts/settings_fuzz.py conf/group_arithmetic_cpu.py --shrink '{"n_epochs": 2, "eval_every": 1}'
    python scripts/settings_fuzz.py conf/kg_reasoning_cpu.py --shrink '{"n_steps": 4, "eval_every_steps": 2}' \
        --skip batch_size,eval_batch_size

Every run goes through main.main in this process (imports paid once), into a temporary folder. A line per
try: `[0]` the run finished, `[2]` refused with a message (printed: read them, they should name the problem
and the fix), `[1]` the run failed (its logs.log shows whether with one line or a traceback), `[EXC]` an
exception escaped main.main (a bug). The programme's own bugs show as tracebacks: the tries that print one
are the ones to look at. What each setting is tried at: every other choice; for numbers, the lower limit,
one above it, about twice the default, and None where allowed; a bool flipped. Lists, dicts and free text
are left alone.
"""
import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import traceback
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the budget, the cadence and where the run goes are the fuzz's own: not fuzzed
SKIP = {"task", "n_epochs", "n_steps", "n_samples", "eval_every", "eval_every_steps", "eval_every_samples",
        "checkpoint_every", "checkpoint_every_steps", "checkpoint_every_samples", "progress", "device", "threads",
        "mixed_precision", "pretrained_path"}


def candidates(field, default):
    """The values a setting is tried at (not its default)."""
    meta = field.metadata
    if meta["choices"]:
        return [c for c in meta["choices"] if c != default]
    if typing.get_origin(field.type) in (list, dict):  # list[int] is no int
        return []
    args = typing.get_args(field.type)
    base = field.type if isinstance(field.type, type) else next((a for a in args if a is not type(None)), None)
    out = [None] if type(None) in args and default is not None else []
    low, high = meta["low"], meta["high"]
    if base is bool:
        return [not default] if isinstance(default, bool) else [True, False]
    if base is int:
        d = default if isinstance(default, int) else 1
        tries = {low if low is not None else -1, (low or 0) + 1, 2 * d + 1, d + 3}
    elif base is float:
        d = default if isinstance(default, (int, float)) else 0.1
        tries = {low if low is not None else -1.0, 10 * d if d else 0.3, 0.5}
    else:
        return out
    return out + sorted(v for v in tries if v != default and (high is None or v <= high))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("conf")
    parser.add_argument("--shrink", default="{}", help="settings (JSON) that make every try tiny")
    parser.add_argument("--skip", default="", help="settings not to try, comma-separated (e.g. a full batch "
                                                  "that would take minutes)")
    parser.add_argument("--only", default="", help="try only these settings, comma-separated")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    import main as entry
    import settings
    import tasks

    values = settings.load_file(args.conf)
    shrink = json.loads(args.shrink)
    skip = SKIP | set(filter(None, args.skip.split(","))) | set(shrink)
    only = set(filter(None, args.only.split(",")))
    fields = dataclasses.fields(tasks.get(values["task"]).Settings)
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for field in fields:
            if field.name in skip or (only and field.name not in only):
                continue
            default = values.get(field.name, None if field.default is dataclasses.MISSING else field.default)
            for value in candidates(field, default):
                n += 1
                argv = ["--config", args.conf, "--results-path", f"{tmp}/{n}"]
                for name, v in {**shrink, field.name: value}.items():
                    argv += ["--set", f"{name}={v!r}"]
                err = io.StringIO()
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        code = entry.main(argv)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - escaped main.main: the bug this looks for
                    code = "EXC"
                    err.write("".join(traceback.format_exception(exc)))
                text = err.getvalue()
                lines = text.strip().splitlines() or [""]
                last = next((line for line in lines if line.startswith("error:")), lines[-1])
                print(f"[{code}] {field.name}={value!r}: {last[:300]}", flush=True)
                log = Path(tmp, str(n), "logs.log")
                shown = (log.read_text() if code == 1 and log.exists() else "") + text
                if "Traceback" in shown:
                    print("    " + shown[shown.index("Traceback"):][-1500:].replace("\n", "\n    "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
