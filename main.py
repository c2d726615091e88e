"""One run: python main.py [--config conf/<file>] [--set name=value ...] [--results-path DIR].

Without --config the run uses the embedded defaults (a CPU-scale target-function run), or, where
--results-path names a run's folder, that run's own settings (to resume it). Without
--results-path the run gets a fresh numbered folder results_new/<id>/0/. Settings are validated before
any work; a mistake is reported as a message naming the setting, never as a traceback.
"""
import argparse
import gc
import contextlib
import json
import os
import signal
import sys
import time
import traceback

import settings as settings_module
from results import (RESULTS_ROOT, STALE_S, ResultsError, RunDir, allocate_dir, close_logger, ensure_writable,
                     environment_refused, heard_from_elsewhere, holder_alive, quoted, run_logger)


class RunFailed(RuntimeError):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a session ending) taken down the Ctrl-C path: what was written is kept and an
    unfinished run is marked interrupted, instead of the process vanishing mid-write."""

    exit_code = 128 + signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises Terminated, and SIGINT KeyboardInterrupt even where the process
    inherited it ignored (a job a script started in the background: `kill -INT` would do nothing). Main
    thread only; elsewhere nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def exit_code(interrupt):
    return getattr(interrupt, "exit_code", 130)


def run(settings, run_dir, echo=False, note=None):
    """Train one run into run_dir (a RunDir or a path): status, config, logs, metrics, summary. `note`: a line
    logged after the settings.

    Returns the summary. A failure marks the run failed with its traceback in logs.log and raises
    RunFailed; Ctrl-C marks it interrupted and re-raises.
    """
    import training  # heavy imports (torch, accelerate) only once a run really starts

    started = time.time()
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    run_dir.path.mkdir(parents=True, exist_ok=True)
    run_dir.write_settings(settings, header=f"Resolved settings of the run in {run_dir.path}.\n"
                           f"Repeat it with: python main.py --config {quoted(run_dir.path / 'config.py')}")
    stacked_before = run_dir.status().get("stacked_with")
    run_dir.set_status("running", stacked_with=None)  # this attempt trains it alone
    log = run_logger(run_dir, echo=echo)
    try:
        log.info(f"run {run_dir.path} started; settings:")
        for name, value in settings_module.as_dict(settings).items():
            log.info(f"  {name} = {value!r}")
        if stacked_before:
            log.info(f"trained alone from here (an earlier attempt was stacked with runs {', '.join(stacked_before)})")
        if note:
            log.info(note)
        summary = training.train(settings, run_dir, log, started)
        run_dir.set_status("done", wall_time=summary["wall_time"])
        return summary
    except KeyboardInterrupt:
        summary_file = run_dir.file("summary.json")
        if summary_file.exists() and summary_file.stat().st_mtime >= started:
            # the stop came after this attempt wrote its summary: the run is finished, keep it as done
            # (marking it interrupted would make --resume train it again)
            summary = run_dir.summary() or {}
            log.info("stop signal after the summary was written: the run is done")
            run_dir.set_status("done", wall_time=summary.get("wall_time"))
        else:
            log.error("interrupted (Ctrl-C or a stop signal); finished evaluations are kept in metrics.jsonl")
            run_dir.set_status("interrupted", error="interrupted")
        raise
    except Exception as exc:
        if isinstance(exc, (ResultsError, FloatingPointError, settings_module.SettingsError)):  # the user must
            # act (a full disk, a smaller lr, a warmup longer than the run): one line that says what, no traceback
            log.error(f"run failed: {exc}")
        else:
            log.error("run failed:\n" + traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}"
        try:
            run_dir.set_status("failed", error=error)
        except (ResultsError, OSError) as status_exc:  # the disk that failed the run may refuse this too
            log.error(f"could not record the failure in status.json: {status_exc}")
        raise RunFailed(error) from exc
    finally:
        close_logger(log)


def alone_note(why):
    """The line a sweep's run that trains alone though the sweep stacks (--stack) logs: why."""
    return f"trained alone, not stacked: {why}"


def run_folder(path, echo=False, note=None):
    """Run (or resume) the run whose resolved settings are already in folder `path` (sweeps use this); `note`:
    a line for its logs.log (why a sweep's run trains alone)."""
    run_dir = RunDir(path)
    values = run_dir.config()
    if values is None:
        raise ResultsError(f"{run_dir.path} has no readable config.json")
    settings = settings_module.build(values)
    import training
    try:
        training.check_memory(settings)  # here, on the machine that trains, not where the sweep was queued
    except training.MemoryRefused as exc:
        run_dir.set_status("failed", error=str(exc))
        raise RunFailed(str(exc)) from exc
    return run(settings, run_dir, echo=echo, note=note)


RUN_FILES = ("config.py", "config.json", "status.json", "logs.log", "metrics.jsonl", "summary.json",
             "checkpoint.pt", "claim.json")  # what a run writes in its folder


def _check_not_foreign(where):
    """A --results-path folder that holds a sweep (its runs would vanish from report.py behind this run's
    files), or files of the names a run writes without being a run (a user's own config.py, metrics.jsonl:
    they would be overwritten), is refused (ResultsError). Other files (a log the shell redirects there, a
    .gitkeep) are left alone beside the run's."""
    if not where.is_dir():
        return
    entries = {p.name for p in where.iterdir()}
    if "sweep.json" in entries:
        raise ResultsError(f"{where} holds a sweep (sweep.json): this run's files would hide its runs from "
                           "report.py; choose a new or empty --results-path, or one run's folder of the sweep")
    # a results root (sweeps' folders) or an experiment folder main.py made (its run 0/): the same hiding
    held = sorted((p.name for p in where.iterdir() if p.name.isdigit() and p.is_dir() and _holds_runs(p)), key=int)
    if held:
        raise ResultsError(f"{where} holds runs or sweeps ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}): "
                           "this run's files would hide them from report.py; choose a new or empty --results-path, "
                           "or one run's own folder")
    clash = sorted(entries & set(RUN_FILES))
    config = RunDir(where).config() if "config.json" in entries else None
    if clash and not (isinstance(config, dict) and "task" in config):
        # no run's config.json: none at all, or another's (a model folder's config.json has no task)
        what = "its config.json is no run's" if "config.json" in entries else "no config.json"
        raise ResultsError(f"{where} holds {', '.join(clash)} but no run ({what}): this run would overwrite "
                           "them; choose a new or empty --results-path, or move them")


def _holds_runs(folder):
    """Whether a numbered folder is a run, a sweep, or main.py's experiment folder (its run 0/ in it); a folder
    that cannot be read counts as none."""
    try:
        return any((folder / name).exists() for name in ("status.json", "sweep.json")) or \
            any(q.name.isdigit() and (q / "status.json").exists() for q in folder.iterdir())
    except OSError:
        return False


def _check_earlier_run(run_dir, settings):
    """A --results-path folder that already holds a run: a finished one, one that a live process on this
    machine is training, or an unfinished one with other settings (its checkpoint would be resumed under
    them, or its evaluations overwritten) is refused (ResultsError); an unfinished one with the same
    settings is resumed (from its checkpoint, if any)."""
    where = run_dir.path
    _check_not_foreign(where)
    status = run_dir.status()
    if status.get("state") == "done" or run_dir.summary() is not None:  # a summary is written when a run ends
        raise ResultsError(f"{where} already holds a finished run; choose another --results-path")
    if status.get("state") == "running" and holder_alive(status):
        raise ResultsError(f"{where} holds a run that process {status.get('pid')} on this machine is training "
                           "now; wait for it, stop it, or choose another --results-path")
    heard = heard_from_elsewhere(status)
    if heard is not None:
        raise ResultsError(f"{where} holds a run that process {status.get('pid')} on {status.get('host')} is "
                           f"training (its heartbeat in status.json is {heard:.0f} s old); wait for it, stop it "
                           f"there, or choose another --results-path (a run whose machine is gone is taken up "
                           f"after {STALE_S // 60} minutes without a heartbeat)")
    earlier = run_dir.config()
    if earlier is None or not (run_dir.file("checkpoint.pt").exists() or run_dir.file("metrics.jsonl").exists()):
        return
    mine = json.loads(json.dumps(settings_module.as_dict(settings)))  # as config.json holds it (lists, not tuples)
    changed = [name for name in sorted(set(mine) | set(earlier))
               if name != "progress" and mine.get(name, None) != earlier.get(name, None)]
    if changed:
        shown = ", ".join(f"{name} {earlier.get(name)!r} there, {mine.get(name)!r} now" for name in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ResultsError(f"{where} holds an unfinished run ({status.get('state', 'no status')}) with other "
                           f"settings ({shown}{more}): resuming it with these would mix two runs. Resume it "
                           f"with its own settings (python main.py --config {quoted(run_dir.file('config.py'))} "
                           f"--results-path {where}), or choose another --results-path")


def _check_device(settings):
    """device = 'cuda' on a machine without one, and fp16 autocast where the run would be on a CPU, are
    refused before anything is written (a sweep cannot check this where it submits: SLURM jobs run
    elsewhere; there training.make_accelerator refuses them)."""
    import torch
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise settings_module.SettingsError("setting device = 'cuda' but this machine has no CUDA device "
                                            "torch can use; use device = 'auto' (a GPU where there is one)")
    import training
    training.autocast_precision(settings)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--config", help="settings file (Python `name = value` lines, or JSON)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override one setting (repeatable), e.g. --set lr=1e-3")
    parser.add_argument("--results-path", help="write the run into this folder instead of a new numbered one")
    parser.add_argument("--results-root", default=str(RESULTS_ROOT), help="root of numbered folders")
    parser.add_argument("--help-settings", action="store_true",
                        help="list the settings of the task (from --config, or the default task) and exit")
    return parser.parse_args(argv)


def main(argv=None):
    with sigterm_as_interrupt():
        return _main(sys.argv[1:] if argv is None else argv)


def _main(argv):
    args = parse_args(argv)
    if environment_refused():
        return 2
    run_dir = None  # a stop can come before the folder exists (settings load the task, which imports torch)
    try:
        overrides = dict(settings_module.parse_override(text) for text in args.overrides)
        if args.help_settings:
            import tasks
            values = settings_module.load_file(args.config) if args.config else {}
            values.update(overrides)
            task = values.get("task", settings_module.CommonSettings.task)
            try:
                task_class = tasks.get(task)
            except tasks.UnknownTask as exc:
                raise settings_module.SettingsError(str(exc))
            print(f"settings of task '{task}':\n" + settings_module.describe(task_class.Settings))
            return 0
        given = RunDir(args.results_path) if args.results_path else None
        earlier = given.config() if given and not args.config else None
        if isinstance(earlier, dict) and "task" in earlier:  # a run's config.json (not a model's, say)
            # `main.py --results-path DIR` on a run folder: its own settings (resuming it), not the defaults
            print(f"settings: {given.file('config.json')}", file=sys.stderr)
            settings = settings_module.build({**earlier, **overrides})
        else:
            settings = settings_module.load(args.config, overrides)
        _check_device(settings)
        import training
        training.check_memory(settings)
        if args.results_path:
            ensure_writable(args.results_path, "choose another --results-path or fix its permissions")
            run_dir = given
            _check_earlier_run(run_dir, settings)
            status = run_dir.status()
            if status.get("state") in ("running", "failed", "interrupted"):  # an unfinished run, resumed here:
                run_dir.note_status(attempts=status.get("attempts", 0) + 1)  # counted as sweep.py --resume does
        else:
            ensure_writable(args.results_root, "choose another --results-root or fix its permissions")
            _, experiment = allocate_dir(args.results_root)
            run_dir = RunDir(experiment / "0")
        print(f"run folder: {run_dir.path}", file=sys.stderr)
        summary = run(settings, run_dir, echo=True)
    except (settings_module.SettingsError, ResultsError) as exc:
        print("error: " + str(exc).replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"error: the run failed: {exc}\n(its log: {run_dir.file('logs.log')})", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        where = f"what was written is in {run_dir.path}" if run_dir else "before the run started; nothing was written"
        print(f"\ninterrupted; {where}", file=sys.stderr)
        return exit_code(stop)
    final = summary["final"]
    print(f"done in {summary['wall_time']:.1f}s: " + ", ".join(
        f"{k} {v:.4f}" for k, v in final.items() if k.endswith(("_accuracy", "_loss"))))
    print(f"results in {run_dir.path}")
    return 0


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `main.py --help-settings | head` closed the pipe: what it wanted was printed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    # Everything is written and closed. Exempt the objects alive now (torch's, transformers') from the
    # garbage collection the interpreter runs at exit: about half a second of a run's start-to-end time.
    gc.freeze()
    sys.exit(code)
