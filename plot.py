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
from results import ResultsError, RunDir, ensure_writable, environment_refused, quoted


def load_runs(folder):
    """Every run under folder (a sweep or one run) that has a config and metrics: dicts with name,
    config, metrics (the evaluation records) and summary ({} while a run is unfinished)."""
    out = []
    for path in report.run_folders(folder):
        run = RunDir(path)
        config, metrics = run.config(), run.read_metrics()
        if config and metrics:
            out.append({"name": path.name, "config": config, "metrics": metrics, "summary": run.summary() or {}})
    return out


def stem(folder):
    """File-name stem of a folder's plots: the sweep id, or run_<n> for a single run."""
    folder = Path(folder)
    return f"run_{folder.name}" if (folder / "status.json").exists() else folder.name


def accuracy_curves(folder, runs, out_dir, title=None, cols=3, chance=None):
    """Per point of the grid (the seeds of a point overlaid), accuracy and, beside it, loss against epochs:
    train dashed, test solid. title(label, runs_of_the_point) -> panel title (default: the label, i.e.
    the varied settings other than seed); chance(run) -> the accuracy of guessing, drawn dotted (None:
    no line). The figure's title names the folder, the programme and what varies; the legend sits below
    the panels. Returns the PNG's path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    varied = [n for n in report.varied_names(folder) if n != "seed"]
    points = {}
    for run in runs:
        label = ", ".join(f"{n}={run['config'].get(n)}" for n in varied) or run["config"].get("task", "")
        points.setdefault(label, []).append(run)
    cols = min(cols, len(points))
    rows = -(-len(points) // cols)
    height = 3.2 * rows + 0.7  # the panels, the title and one line of legend below
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(4.2 * 2 * cols, height), squeeze=False)
    pairs = [(axes[i // cols][2 * (i % cols)], axes[i // cols][2 * (i % cols) + 1]) for i in range(rows * cols)]
    for (acc, loss), (label, members) in zip(pairs, points.items()):
        for i, run in enumerate(members):
            epochs = [r["epoch"] for r in run["metrics"]]
            seed = run["config"].get("seed")
            for split, style in (("test", "-"), ("train", "--")):
                acc.plot(epochs, [r.get(f"{split}_accuracy") for r in run["metrics"]], color=f"C{i}", ls=style,
                         alpha=1.0 if split == "test" else 0.6, label=f"{split}, seed {seed}")
                loss.plot(epochs, [r.get(f"{split}_loss") for r in run["metrics"]], color=f"C{i}", ls=style,
                          alpha=1.0 if split == "test" else 0.6)
        if chance is not None and chance(members[0]) is not None:
            acc.axhline(chance(members[0]), color="grey", ls=":", lw=1, label="chance")
        acc.set_title(title(label, members) if title else label, fontsize=9)
        loss.set_title("loss", fontsize=9)
        for ax in (acc, loss):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        acc.set_ylim(-0.03, 1.03)
        acc.set_ylabel("accuracy")
        loss.set_yscale("log")
    for acc, loss in pairs[len(points):]:
        acc.axis("off")
        loss.axis("off")
    handles, labels = pairs[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, frameon=False)
    task = runs[0]["config"].get("task", "")
    fig.suptitle(f"{Path(folder)} ({task})" + (f": varies {', '.join(varied)}" if varied else "")
                 + (", seeds overlaid" if any(len(m) > 1 for m in points.values()) else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem(folder)}_accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def task_of(folder):
    """The programme of the runs under folder; ValueError, said in one line, where there is none or several
    (each programme plots its own runs its own way)."""
    found = {}
    for path in report.run_folders(folder):
        config = RunDir(path).config()
        if config:
            found.setdefault(config.get("task", "target_functions"), path.name)
    if not found:
        raise ValueError(f"no run with a config.json under {folder}")
    if len(found) > 1:
        raise ValueError(f"the runs under {folder} belong to several programmes ("
                         + ", ".join(f"{task}, e.g. run {name}" for task, name in found.items())
                         + "); plot each programme's runs from a folder of their own")
    return next(iter(found))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("folder")
    p.add_argument("--out", help="folder for the PNG files (default: the folder itself)")
    args = p.parse_args(argv)
    if environment_refused():
        return 2
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    try:
        name = task_of(folder)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(tasks.TASK_MODULES[name])
    if not hasattr(module, "plot"):
        print(f"error: the {name} programme offers no plots", file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    out = Path(args.out) if args.out else folder
    try:
        ensure_writable(out, "give a writable folder with --out")
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = list(module.plot(folder, out))
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"nothing to plot: no run in {folder} has the finished evaluations these plots need "
              f"(python report.py {quoted(folder)} shows each run's state)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
