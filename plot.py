"""Plots of a run or a sweep folder, drawn by the programme that made it (PNG files into the folder).

    python plot.py results_new/7            every plot the programme offers for that folder
    python plot.py results_new/7 --out docs/ write the PNGs elsewhere
Each task module offers `plot(folder, out_dir) -> list of written paths`.
"""
import argparse
import importlib
import sys
from pathlib import Path

import report
import tasks
from results import RunDir


def task_of(folder):
    for path in report.run_folders(folder):
        config = RunDir(path).config()
        if config:
            return config.get("task", "target_functions")
    raise SystemExit(f"error: no run with a config.json under {folder}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--out", help="folder for the PNG files (default: the folder itself)")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    name = task_of(folder)
    module = importlib.import_module(tasks.TASK_MODULES[name])
    if not hasattr(module, "plot"):
        print(f"error: the {name} programme offers no plots", file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    out = Path(args.out) if args.out else folder
    out.mkdir(parents=True, exist_ok=True)
    for path in module.plot(folder, out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
