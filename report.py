"""One row per run of a sweep: varied settings, status, final and best metrics, wall time.

    python report.py results_new/7                 a table on the terminal
    python report.py results_new/7 --csv out.csv   the same rows as CSV ('-' for standard output)
    python report.py results_new/7 --group         mean +- std over runs that differ only in seed
"""
import argparse
import csv
import json
import os
import socket
import statistics
import sys
from pathlib import Path

from results import STALE_S, RunDir, heartbeat_age, holder_alive, quoted, read_json, resume_command


def run_folders(folder):
    folder = Path(folder)
    if (folder / "status.json").exists():
        return [folder]
    return sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def manifest_of(folder):
    """The sweep's sweep.json ({} for one run's folder, or with a warning where it is damaged)."""
    path = Path(folder) / "sweep.json"
    manifest = read_json(path)
    if manifest is None and path.exists():
        print(f"warning: {path} is unreadable (damaged): the varied settings are read from the runs' own configs",
              file=sys.stderr)
    return manifest or {}


def varied_names(folder, manifest=None):
    """The settings the runs under folder vary: the sweep's grid (sweep.json), or, for a folder without one
    (runs gathered by hand, a damaged manifest), the settings whose values differ between the runs' configs,
    the task first."""
    manifest = manifest_of(folder) if manifest is None else manifest
    if not manifest.get("vary") and not manifest.get("runs"):
        return _varied_in_configs(folder)
    names = [v["name"] for v in manifest.get("vary", [])]
    if any("seed" in r.get("overrides", {}) for r in manifest.get("runs", [])) and "seed" not in names:
        names.append("seed")
    return names


def _varied_in_configs(folder):
    configs = [c for c in (RunDir(p).config() for p in run_folders(folder)) if c]
    names = list(dict.fromkeys(name for c in configs for name in c))  # first seen, first listed
    varied = [n for n in names if n != "progress"
              and len({json.dumps(c.get(n), sort_keys=True, default=str) for c in configs}) > 1]
    return sorted(varied, key=lambda n: n != "task")


def _counted_in(summary, config):
    """The unit a run counts in: its summary's, or, for a run not finished yet, its programme's (kg: steps)."""
    if summary.get("counted_in"):
        return summary["counted_in"]
    if not config:
        return None
    import tasks
    try:
        return tasks.get(config.get("task", "target_functions")).counted_in
    except (tasks.UnknownTask, ImportError):
        return None


def rows(folder):
    folder = Path(folder)
    manifest = manifest_of(folder)
    names = varied_names(folder, manifest)
    out = []
    for path in run_folders(folder):
        run = RunDir(path)
        config, status, summary = run.config() or {}, run.status(), run.summary() or {}
        final = summary.get("final") or (run.read_metrics() or [{}])[-1]
        row = {"run": path.name}
        if not config:
            fix = f"{resume_command(folder)} writes it again" if manifest else "its config.py holds the same settings"
            damaged = "unreadable (damaged)" if run.file("config.json").exists() else "missing"
            print(f"warning: {run.file('config.json')} is {damaged}: run {path.name}'s settings are left blank; {fix}",
                  file=sys.stderr)
        row.update({name: config.get(name) for name in names})
        row["status"] = status.get("state", "missing")
        if row["status"] == "missing" and run.file("status.json").exists():  # there, but damaged
            # a summary is written when a run finishes: then it most likely did
            row["status"] = "done?" if summary.get("final") else "unreadable"
            print(f"warning: {run.file('status.json')} is unreadable (damaged): run {path.name}'s state is "
                  f"shown as {row['status']!r}", file=sys.stderr)
        if not summary and run.file("summary.json").exists():
            print(f"warning: {run.file('summary.json')} is unreadable (damaged): run {path.name}'s numbers come "
                  "from its metrics.jsonl, and its summary's own (best, first epochs, wall time) are left out",
                  file=sys.stderr)
        if row["status"] == "running" and status.get("host") == socket.gethostname() and not holder_alive(status):
            # killed without a word (the OOM killer, kill -9): its status still says running
            row["status"] = "dead"
            status = dict(status, error=f"process {status.get('pid')} is gone and left no result; "
                                        "re-run it with sweep.py --resume")
        elif row["status"] == "running" and status.get("host") != socket.gethostname() \
                and (silent := heartbeat_age(status) or 0) >= STALE_S:
            # on another machine, whose process cannot be asked from here: silent for longer than a live one is
            row["status"] = "dead?"
            job = status.get("slurm_job")
            status = dict(status, error=f"no heartbeat from process {status.get('pid')} on {status.get('host')} for "
                                        f"{silent / 60:.0f} minutes: most likely gone"
                                        + (f" (unless SLURM job {job} is pending or suspended: squeue -j {job})"
                                           if job else "") + "; re-run it with sweep.py --resume")
        if _counted_in(summary, config) != "step" and ("epoch" in final or "step" not in final):
            row["epoch"] = final.get("epoch")
        else:  # a stream has no epochs; a programme budgeted in steps (kg_reasoning) is counted in them
            row["step"] = final.get("step")
        # accuracies, then losses, then the best test accuracy and when each accuracy first reached 1
        for suffix in ("_accuracy", "_loss"):
            row.update({k: v for k, v in final.items() if k.endswith(suffix)})
        row.update({k: v for k, v in summary.items()
                    if k.startswith(("best_test", "best_valid", "first_epoch_", "first_step_"))})
        row.update({k: summary.get(k) for k in summary.get("report_columns", [])})  # the programme's own
        row["wall_time"] = summary.get("wall_time", status.get("wall_time"))
        if row["status"] in ("failed", "dead", "dead?"):
            # one line, so the table stays a table (an error recorded from a worker's log has many)
            lines = [line.strip() for line in str(status.get("error", "")).splitlines() if line.strip()]
            row["error"] = lines[-1] if lines else ""
        out.append(row)
    # runs the sweep's manifest lists whose folder is gone (deleted by hand): a row says so, not silence
    present = {row["run"] for row in out}
    gone = [run for run in manifest.get("runs", []) if "run" in run and str(run["run"]) not in present]
    base = manifest.get("base_settings", {})
    for run in gone:
        overrides = run.get("overrides", {})
        out.append({"run": str(run["run"]), **{name: overrides.get(name, base.get(name)) for name in names},
                    "status": "missing",
                    "error": f"{folder / str(run['run'])} is gone; {resume_command(folder)} makes it again and "
                             "trains it"})
    # a sweep's runs are numbered folders (run_folders' order); the missing go in their place
    return sorted(out, key=lambda row: int(row["run"])) if gone else out


def group_rows(table, names):
    """Mean and spread over the finished runs that share every varied setting except the seed (`runs`
    counts them all, `done` those the means are over)."""
    keys = [n for n in names if n != "seed"]
    groups = {}
    for row in table:
        groups.setdefault(tuple(repr(row.get(k)) for k in keys), []).append(row)
    out = []
    for members in groups.values():
        row = {k: members[0].get(k) for k in keys}
        row["runs"] = len(members)
        done = [r for r in members if r["status"] == "done"]
        row["done"] = len(done)
        metrics = sorted({m for r in members for m in r if m.endswith(("_accuracy", "_loss"))
                          and not m.startswith(("best_", "first_"))})
        # the other numbers of a run (the programme's columns, the first epoch an accuracy reached 1, ...):
        # averaged where every finished run has one (a run that never reached it has none: no mean then)
        others = sorted({m for r in done for m in r if m not in metrics and m not in NOT_AVERAGED and m not in keys
                         and all(_number(x.get(m)) for x in done)})
        for metric in metrics + others:
            values = [r[metric] for r in done if _number(r.get(metric))]
            if values:
                row[f"{metric}_mean"] = statistics.fmean(values)
                # one run has no spread: blank, not 0 (which would read as replicates agreeing exactly)
                row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        out.append(row)
    return out


NOT_AVERAGED = {"run", "seed", "status", "error", "epoch", "step", "wall_time"}


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def columns(table):
    """Every key of the rows in order of first appearance, wall_time and error last (a column that only
    later runs have, such as a first_epoch_* one, still sits with the metrics)."""
    cols = []
    for row in table:
        cols.extend(k for k in row if k not in cols)
    return [c for c in cols if c not in ("wall_time", "error")] + [c for c in ("wall_time", "error") if c in cols]


def format_table(table):
    if not table:
        return "(no runs)"
    cols = columns(table)

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
        return "" if value is None else str(value)
    cells = [[cell(r.get(c)) for c in cols] for r in table]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_csv(table, stream):
    writer = csv.DictWriter(stream, fieldnames=columns(table))
    writer.writeheader()
    writer.writerows(table)


def task_notes(folder):
    """Lines the programme of a folder prints below its table (its task module's report_notes(folder),
    e.g. fitted scaling laws); none if it offers none."""
    import importlib

    import tasks
    for path in run_folders(folder):
        config = RunDir(path).config()
        if config:
            task = config.get("task", "target_functions")
            if task not in tasks.REPORT_NOTES:
                return []
            name = tasks.TASK_MODULES.get(task)
            try:
                module = importlib.import_module(name) if name else None
            except ImportError as exc:  # the table needs no torch; the programme's notes do
                return [f"(the {config.get('task')} notes below the table need {exc.name or 'a module'}, "
                        f"which this Python cannot import: {exc}; run report.py with the project's environment)"]
            return list(module.report_notes(folder)) if hasattr(module, "report_notes") else []
    return []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("folder", help="a sweep folder results_new/<id> or one run folder")
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV to FILE ('-': standard output)")
    p.add_argument("--group", action="store_true", help="aggregate runs that differ only in seed")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    if not (folder / "sweep.json").exists() and not (folder / "status.json").exists():
        numbered = run_folders(folder)
        sweeps = [p.name for p in numbered if (p / "sweep.json").exists()]
        if sweeps:  # the results root itself
            print(f"error: {folder} holds sweeps ({', '.join(sweeps[:10])}{', ...' if len(sweeps) > 10 else ''}), "
                  f"not runs; give one: python report.py {quoted(folder / sweeps[-1])}", file=sys.stderr)
            return 2
        if not numbered:
            print(f"error: {folder} holds no run folders (numbered folders with a status.json); give a sweep "
                  "folder results_new/<id> or one run's folder", file=sys.stderr)
            return 2
    table = rows(folder)
    if args.group:
        table = group_rows(table, varied_names(folder))
    if args.csv == "-":
        write_csv(table, sys.stdout)
    elif args.csv:
        try:
            with open(args.csv, "w", newline="", encoding="utf-8") as f:
                write_csv(table, f)
        except OSError as exc:
            print(f"error: cannot write {args.csv}: {exc.strerror or exc}; give a writable path to --csv",
                  file=sys.stderr)
            return 2
        print(f"wrote {len(table)} row{'' if len(table) == 1 else 's'} to {args.csv}")
    else:
        print(format_table(table))
        for line in task_notes(folder):
            print(line)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `report.py ... | head` closed the pipe: what it wanted was printed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
