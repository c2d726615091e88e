"""Queue one job per point of a grid of settings.

Interactive (the questions the research codebases' users know):
    python sweep.py
Without a terminal, through the same questions answered from flags or a file:
    python sweep.py --base conf/target_functions_cpu.py --vary lr=1e-3x2,1e-2x2 --vary batch_size=5 --yes
    python sweep.py --answers answers.txt --yes        (one answer per line, exactly as typed)
Resume the runs of a sweep that are not done:
    python sweep.py --resume 7
Train replicates (runs differing only in seed, lr, weight decay, data seed) K at a time as one stacked model:
    python sweep.py --base conf/assoc_memory_exp1.py --vary H=1,6 --vary seed=0x5 --stack 5 --yes

Values are literals (numbers, True/False/None, quoted or bare strings; curly quotes accepted) written
AxB: value A repeated B times, where B is the digits after the last 'x' ('qwen1.7B' and 'A' alone mean
B = 1; write '2x3x4x1' for the value 2x3x4). The grid is the Cartesian product, last name fastest.
Repeats of a value are replicates: each gets the seed setting plus its repeat index (seed=0x3 gives
seeds 0, 1, 2).
"""
import argparse
import contextlib
import dataclasses
import getpass
import itertools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import settings as settings_module
from main import exit_code, sigterm_as_interrupt
import report
from results import (RESULTS_ROOT, ResultsError, RunDir, allocate_dir, atomic_write_json, disk_full, ensure_writable,
                     environment_refused, STALE_S, heard_from_elsewhere, holder_alive, log_line, now, quoted,
                     read_json, resume_command)

Q_BASE = "Please specify filepath of base settings:"
Q_NAME = "Specify hyperparam to vary (e.g. lr) or 'END':"
Q_VALUE = "Specify value of hyperparam and how many as AxB or 'END':"
Q_CONFIRM = "You are about to queue {n} jobs. Would you like to proceed? (y/n)"
END = "END"
PROJECT = Path(__file__).resolve().parent
AXB = re.compile(r"^(?P<a>.+)x(?P<b>\d+)$", re.DOTALL)


class SweepError(ValueError):
    """A mistake in the sweep request: printed as a message, exit code 2."""


class Cancelled(Exception):
    pass


# ---------------------------------------------------------------- parsing answers

def parse_axb(text):
    """'0.1x5' -> (0.1, 5); 'qwen1.7B' -> ('qwen1.7B', 1); "'func7'x2" -> ('func7', 2)."""
    text = text.strip().translate(settings_module.CURLY_QUOTES)
    if not text:
        raise SweepError("empty value: type a value, optionally followed by xB (e.g. 0.1x5), or END")
    match = AXB.match(text)
    if match and not _is_quoted(text):
        a, b = match.group("a"), int(match.group("b"))
        if b < 1:
            raise SweepError(f"{text!r}: the count after 'x' must be at least 1")
        return settings_module.parse_value(a), b
    return settings_module.parse_value(text), 1


def _is_quoted(text):
    return len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""


@dataclasses.dataclass
class Plan:
    base: str
    base_values: dict
    settings_class: type
    vary: list = dataclasses.field(default_factory=list)      # [(name, [(value, count), ...]), ...]
    answers: list = dataclasses.field(default_factory=list)   # every accepted answer, in order
    description: str = ""  # the grid and its warnings, shown before queueing

    @property
    def job_count(self):
        return math.prod(sum(count for _, count in values) for _, values in self.vary) if self.vary else 1


# ---------------------------------------------------------------- the questions (one code path)

class ScriptedAsker:
    """Answers from a list (flags or an answers file): a wrong answer is an error, not a re-ask."""

    def __init__(self, answers):
        self.answers = list(answers)

    def ask(self, message, validate, completions=None):
        if not self.answers:
            raise SweepError(f"the answers ran out at the question: {message}")
        answer = self.answers.pop(0)
        problem = validate(answer)
        if problem is not True:
            problem = str(problem).removeprefix(f"{answer!r}: ")  # said once, not twice
            # an answer from a flag names the flag; one from a file or a list, the question it answered
            raise SweepError(f"{getattr(answer, 'flag', None) or message} {answer!r}: {problem}")
        return answer


class FlagAnswer(str):
    """An answer that flags_to_answers made from a command-line flag, which errors name (`flag`)."""

    def __new__(cls, text, flag=None):  # (flag optional: pickle and copy rebuild it from the text alone)
        answer = super().__new__(cls, text)
        answer.flag = flag
        return answer


class QuestionaryAsker:
    """Asks a person at a terminal; a wrong answer shows why and asks again."""

    def ask(self, message, validate, completions=None):
        import questionary
        if completions:
            question = questionary.autocomplete(message, choices=completions, validate=validate,
                                                match_middle=True)
        else:
            question = questionary.text(message, validate=validate)
        try:
            return question.unsafe_ask()
        except EOFError:  # Ctrl-D at a question
            raise SweepError("input ended (Ctrl-D) before the last question; nothing was queued")


def _validator(fn):
    """Turn a function raising SweepError/SettingsError into a questionary validator."""
    def validate(text):
        try:
            fn(text)
            return True
        except (SweepError, settings_module.SettingsError) as exc:
            return str(exc).replace("\n", "; ")
    return validate


def load_base(path):
    values = settings_module.load_file(path)
    settings = settings_module.build(values)  # the base itself must be valid
    return values, type(settings)


def collect(asker, yes=False):
    """Ask the sweep's questions; return the Plan, or raise Cancelled if the person says no."""
    loaded = {}

    def check_base(text):
        try:
            loaded["values"], loaded["class"] = load_base(text.strip())
        except settings_module.SettingsError as exc:
            if exc.problems[0].startswith("pretrained_path=") and ("is not a folder" in exc.problems[0]
                                                                  or "holds no config.json" in exc.problems[0]):
                # the base is built as it stands, before any --vary: a path a grid point overrides is no excuse
                exc = settings_module.SettingsError(
                    [exc.problems[0] + " The base file must itself name a checkpoint folder on this machine, "
                     "even where --vary pretrained_path gives others: edit its pretrained_path."] + exc.problems[1:])
            if len(exc.problems) == 1:
                raise exc
            # a prompt shows one line: the count, the first, and how to see every one
            raise SweepError(f"{text.strip()} has {len(exc.problems)} problems; the first: {exc.problems[0]}; "
                             f"see every one with: python main.py --config {quoted(text.strip())}")

    base = asker.ask(Q_BASE, _validator(check_base)).strip()
    if "values" not in loaded:  # a scripted asker validated it already; a person's answer too
        check_base(base)
    plan = Plan(base=base, base_values=loaded["values"], settings_class=loaded["class"], answers=[base])
    fields = settings_module.fields_of(plan.settings_class)
    names = [n for n in fields if n != "task"]

    def check_name(text):
        name = text.strip()
        if name == END:
            return
        if name == "task":
            raise SweepError("the task cannot be varied inside one sweep; run one sweep per task")
        if name not in fields:
            raise SweepError(f"unknown setting '{name}'; " + settings_module.suggest(name, names))
        if name in [n for n, _ in plan.vary]:
            raise SweepError(f"'{name}' is already varied in this sweep")

    while True:
        name = asker.ask(Q_NAME, _validator(check_name), completions=names + [END]).strip()
        plan.answers.append(name)
        if name == END:
            break
        values = []

        def check_value(text, name=name, values=values):
            if text.strip() == END:
                if not values:
                    raise SweepError(f"give at least one value for {name} before END")
                return
            value, _ = parse_axb(text)
            try:
                value = settings_module.check_value(fields[name], value)
            except settings_module.SettingsError as exc:
                if re.search(r"x\s*$", text.strip()):  # '0x': a count forgotten after the x
                    raise SweepError(f"{exc}; values are written AxB, A repeated B times (e.g. 0x3), or A alone")
                raise
            if isinstance(asker, ScriptedAsker):
                # flags or an answers file: every value is known, and one may need a setting varied after
                # it (lr_schedule=multistep, then lr_milestones): the grid check below takes whole points
                return
            # against the task too, now, so a person re-types it instead of losing every answer after END:
            # the base settings with this value and the first value of each setting varied before it
            earlier = {n: vs[0][0] for n, vs in plan.vary}
            try:
                settings_module.build(settings_module.merge(plan.base_values, {**earlier, name: value}),
                                      plan.settings_class)
            except settings_module.SettingsError as exc:
                raise SweepError(f"{name} = {value!r} does not go with the base settings"
                                 + (" and the values varied before it" if earlier else "") + ": "
                                 + "; ".join(exc.problems) + " (if a setting you vary next makes it valid, "
                                 "vary that one first)")

        while True:
            text = asker.ask(Q_VALUE, _validator(check_value)).strip()
            plan.answers.append(text)
            if text == END:
                break
            value, count = parse_axb(text)
            values.append((settings_module.check_value(fields[name], value), count))
        plan.vary.append((name, values))

    try:
        points = grid(plan)  # every grid point valid before the question that queues them
    except SweepError as exc:
        if isinstance(asker, ScriptedAsker):  # flags or an answers file: the person has them already
            raise
        raise SweepError(f"{exc}\n{save_answers(plan.answers)}")
    plan.description = describe_grid(plan, points)
    if not yes:
        def check_yes(text):
            if text.strip().lower() not in ("y", "yes", "n", "no"):
                raise SweepError("answer y or n")
        answer = asker.ask(plan.description + "\n" + Q_CONFIRM.format(n=plan.job_count), _validator(check_yes))
        plan.answers.append(answer.strip())
        if answer.strip().lower() in ("n", "no"):
            raise Cancelled()
    return plan


PRODUCT = re.compile(r"\d+(x\d+)+")  # a value such as the group 2x3: its own x-suffix reads as a count


def describe_grid(plan, points):
    """The grid as a person checks it before queueing: each varied setting's values and counts, and
    warnings for a value whose x-suffix was read as a count and for points that repeat another."""
    lines = ["grid: " + (" | ".join(f"{name}: " + ", ".join(f"{v!r}" + (f" x{c}" if c > 1 else "")
                                                            for v, c in values)
                                     for name, values in plan.vary) or "the base settings alone")]
    for name, values in plan.vary:
        for value, count in values:
            if count > 1 and isinstance(value, str) and PRODUCT.fullmatch(value):
                lines.append(f"warning: {name} {value!r} x{count} is the value {value!r} repeated {count} times; "
                             f"for the value '{value}x{count}' write {value}x{count}x1")
    seen, repeats = {}, []
    for index, point in enumerate(points):
        key = repr(sorted(settings_module.merge(plan.base_values, point).items()))
        if key in seen:
            repeats.append(f"{index} = {seen[key]}")
        seen.setdefault(key, index)
    if repeats:
        lines.append(f"warning: {len(repeats)} jobs repeat another exactly (same settings and seed): "
                     + ", ".join(repeats[:10]) + (" ..." if len(repeats) > 10 else ""))
    return "\n".join(lines)


def save_answers(answers, folder="."):
    """Write the answers given so far to a file --answers accepts; the sentence that names it."""
    path = Path(folder) / f"sweep_answers_{time.strftime('%Y%m%d-%H%M%S')}.txt"
    try:
        path.write_text("".join(a + "\n" for a in answers), encoding="utf-8")
    except OSError as exc:
        return f"(your answers could not be saved: {exc.strerror or exc})"
    return (f"your answers are saved in {path}: correct the line at fault and run "
            f"python sweep.py --answers {path}")


def flags_to_answers(base, vary):
    """--base/--vary flags -> the answers a person would type, so flags take the same code path."""
    answers = [FlagAnswer(base, "--base")]
    for item in vary:
        name, sep, values = item.partition("=")
        if not sep:
            raise SweepError(f"--vary expects name=AxB,AxB,..., got {item!r}")
        values = _split_values(values)
        if not any(values):
            raise SweepError(f"--vary {item!r}: give at least one value after '=' (name=AxB,AxB,...)")
        if not all(values):
            raise SweepError(f"--vary {item!r}: an empty value (two commas in a row, or one at an end); remove the "
                             "extra comma, or quote an empty string as ''")
        answers.append(FlagAnswer(name.strip(), f"--vary {item}:"))
        answers.extend(FlagAnswer(v, f"--vary {item}:") for v in values)
        answers.append(FlagAnswer(END, f"--vary {item}:"))
    answers.append(END)
    return answers


def _split_values(text):
    """Split 'a,b' at commas outside brackets and quotes (so [1,2]x2 stays one value)."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text.translate(settings_module.CURLY_QUOTES):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


# ---------------------------------------------------------------- the grid

def grid(plan):
    """One dict of settings per job: the Cartesian product, last varied name fastest.

    Repeats (B > 1) of a value are replicates, not identical copies: a point's seed is its seed
    setting (varied or from the base) plus its repeat index. Every point is validated.
    """
    axes = []
    for name, values in plan.vary:
        axes.append([(name, value, rep, count) for value, count in values for rep in range(count)])
    base_seed = plan.base_values.get("seed", settings_module.CommonSettings.seed)
    points, problems = [], {}
    for combo in itertools.product(*axes):
        overrides = {name: value for name, value, _, _ in combo}
        replicate = _replicate_index(combo)
        if replicate:
            overrides["seed"] = overrides.get("seed", base_seed) + replicate
        values = settings_module.merge(plan.base_values, overrides)
        try:
            settings_module.build(values, plan.settings_class)
        except settings_module.SettingsError as exc:
            for problem in exc.problems:
                problems.setdefault(problem, overrides)
        points.append(overrides)
    if problems:
        lines = [f"{problem} (e.g. at {point})" for problem, point in problems.items()]
        raise SweepError("some grid points are impossible; nothing was queued:\n  " + "\n  ".join(lines))
    return points


def _replicate_index(combo):
    """Which repeat of its values this point is: mixed radix over (repeat, count) of each axis."""
    index = 0
    for _, _, rep, count in combo:
        index = index * count + rep
    return index


# ---------------------------------------------------------------- experiment folders

def create_experiment(plan, root, executor_facts):
    """Allocate results_new/<id>/, write the manifest and one queued run folder per grid point."""
    points = grid(plan)
    experiment_id, folder = allocate_dir(root)
    try:
        return _fill_experiment(plan, points, experiment_id, folder, executor_facts)
    except (OSError, ResultsError, KeyboardInterrupt) as exc:
        # a folder of queued runs without its sweep.json cannot be resumed: remove it (nothing has run)
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            raise
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split(";")[0]
        gone = "the partial folder was removed" if not folder.exists() else f"remove the partial folder {folder}"
        raise ResultsError(f"could not write the sweep's folder {folder} ({why}); nothing was queued and {gone}: "
                           "free space on that disk (or fix its permissions) and run sweep.py again") from exc


def _write_run_settings(run_dir, base_values, overrides, settings_class=None, settings=None):
    """A run's config.py and config.json: the base values with the run's overrides (or `settings`, built)."""
    if settings is None:
        settings = settings_module.build(settings_module.merge(base_values, overrides), settings_class)
    run_dir.write_settings(settings, header=f"Run {run_dir.path.name} of sweep {run_dir.path.parent}: {overrides}\n"
                           f"Repeat it with: python main.py --config {quoted(run_dir.path / 'config.py')}")


def _fill_experiment(plan, points, experiment_id, folder, executor_facts):
    base_settings = settings_module.build(plan.base_values, plan.settings_class)
    runs = []
    for index, overrides in enumerate(points):
        run_dir = RunDir(folder / str(index))
        run_dir.path.mkdir()
        _write_run_settings(run_dir, plan.base_values, overrides, plan.settings_class)
        run_dir.set_status("queued")
        runs.append({"run": str(index), "overrides": overrides})
    manifest = {
        "experiment_id": experiment_id, "created": now(), "host": socket.gethostname(),
        "base": plan.base, "base_settings": settings_module.as_dict(base_settings),
        "base_values": plan.base_values,  # as the base file gave them: a run's folder is made again from these
        "vary": [{"name": name, "values": [[v, c] for v, c in values]} for name, values in plan.vary],
        "answers": plan.answers, "runs": runs, "executor": executor_facts, "submissions": [],
    }
    atomic_write_json(folder / "sweep.json", manifest)
    return experiment_id, folder, manifest


# ---------------------------------------------------------------- executors

def default_executor():
    return "slurm" if shutil.which("sbatch") else "local"


def _no_slurm(folder=None):
    """Why a slurm submission cannot be made from this machine (SLURM's commands are not on its PATH), or
    None. folder: the sweep already queued, whose resume command the message gives."""
    missing = " and ".join(tool for tool in ("sbatch", "srun") if not shutil.which(tool))
    if not missing:
        return None
    where = (f" (it is queued: {resume_command(folder)} there), or resume it here with --executor local"
             if folder else ", or use --executor local")
    return (f"--executor slurm needs SLURM's {missing} on this machine's PATH (not found): run the sweep on the "
            f"cluster's login node{where}")


def make_executor(args, folder, array_size=1):
    """The submitit executor; array_size: tasks of a slurm array (its parallelism when none is asked for)."""
    import submitit
    logs = folder / ".submitit"
    if args.executor == "inprocess":
        return submitit.DebugExecutor(folder=logs)
    if args.executor == "local":
        executor = submitit.LocalExecutor(folder=logs)
        executor.update_parameters(timeout_min=args.time)
        return executor
    why = _no_slurm(folder)
    if why:
        raise SweepError(why)
    executor = submitit.SlurmExecutor(folder=logs)
    params = dict(time=args.time, cpus_per_task=args.cpus, job_name=args.job_name,
                  array_parallelism=args.max_parallel or max(1, array_size))  # no limit unless asked
    for key in ("partition", "mem", "constraint", "account", "qos"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.exclusive:
        params["exclusive"] = True
    if args.gpus_per_node:  # only on request: clusters without GRES refuse any GPU line
        params["gpus_per_node"] = args.gpus_per_node
    if args.setup:
        params["setup"] = args.setup
    executor.update_parameters(**params)
    return executor


def plan_workers(args, run_names, units=None):
    """Which runs each submitted job trains, as units (a list of runs trained together as one stacked
    model, or a single run): (per job, its units), threads per job.

    local/in-process: `max_parallel` workers that each walk the whole list and claim what is free
    (dynamic load balancing: a worker that finishes early takes the next unit). slurm: an array with
    `runs_per_job` units per task.
    """
    units = units or [[name] for name in run_names]
    if args.executor == "slurm":
        k = max(1, args.runs_per_job)
        return [units[i:i + k] for i in range(0, len(units), k)], None
    parallel = 1 if args.executor == "inprocess" else max(1, min(args.max_parallel, len(units)))
    threads = max(1, (os.cpu_count() or 1) // parallel)
    return [units[i:] + units[:i] for i in range(parallel)], threads


def plan_stacks(folder, run_names, k, out=None):
    """With --stack K > 1: the runs grouped into stacks of at most K runs that differ only in values that
    leave every tensor shape the same (stacking.plan_stacks), a line for each run trained alone and why.
    Returns (units, {run trained alone: why})."""
    out = out or sys.stderr
    if k <= 1:
        return [[name] for name in run_names], {}
    import stacking  # torch: only when stacks are asked for
    runs = []
    for name in run_names:
        values = RunDir(folder / name).config()
        runs.append((name, settings_module.build(values)))
    units, alone = stacking.plan_stacks(runs, k)
    stacks = [u for u in units if len(u) > 1]
    # what keeps stacks apart beyond their size (a width, a group, a data seed that changes the data's shapes)
    of = dict(runs)
    apart = sorted({name for u in stacks[1:] for name in stacking.differences(of[stacks[0][0]], of[u[0]])})
    print(f"--stack {k}: {len(stacks)} stack{'s' * (len(stacks) > 1)} (" + " | ".join(",".join(u) for u in stacks) + ")"
          + (f"; runs stack apart where they differ in {', '.join(apart)}" if apart else "")
          if stacks else f"--stack {k}: no runs stack", file=out)
    for line in alone_lines(alone):
        print(line, file=out)
    return units, alone


def alone_lines(alone):
    """One line per run a stacked sweep trains alone, saying why (printed, and kept in the manifest)."""
    return [f"run {name} trains alone: {why}" for name, why in alone.items()]


# how the jobs were submitted: recorded with each submission, reused by --resume unless given again
SUBMISSION_OPTIONS = ("executor", "max_parallel", "partition", "time", "cpus", "mem", "gpus_per_node", "constraint",
                      "exclusive", "account", "qos", "setup", "runs_per_job", "job_name", "stack")


def reuse_submission_options(args, manifest):
    """args with the last submission's options where this command line did not give them again."""
    recorded = (manifest.get("submissions") or [{}])[-1].get("options") or {}
    for name, value in recorded.items():
        if name in SUBMISSION_OPTIONS and name not in getattr(args, "given", ()):
            setattr(args, name, value)
    if args.max_parallel is None and args.executor != "slurm":
        args.max_parallel = os.cpu_count() or 1
    return args


@contextlib.contextmanager
def _controllers_stderr_to(path):
    """Start local jobs with their standard error in a file: submitit's controller processes, which
    inherit it, print a KeyboardInterrupt traceback each on Ctrl-C (the runs' own output already goes to
    submitit's per-job logs, and sweep.py prints one line per interrupted run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def worker_devices(args, count):
    """CUDA_VISIBLE_DEVICES for each of `count` local workers: one GPU each, round robin over the GPUs this
    process sees (as its CUDA_VISIBLE_DEVICES names them, or every GPU the NVIDIA driver lists); None where
    nothing is to be set (no GPU; in-process runs; SLURM, which sets it per job). submitit's local executor
    shows its jobs no GPU unless told which: on a GPU machine every local run trained on the CPU."""
    if args.executor != "local":
        return [None] * count
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        gpus = [d.strip() for d in given.split(",") if d.strip()]
    else:
        listed = Path("/proc/driver/nvidia/gpus")
        gpus = [str(i) for i in range(len(list(listed.iterdir())))] if listed.is_dir() else []
    return [gpus[i % len(gpus)] for i in range(count)] if gpus else [None] * count


def submit(args, folder, run_names, manifest):
    from worker import Worker
    # job processes unpickle worker.Worker: make the project importable wherever they start
    paths = [str(PROJECT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    units, alone = plan_stacks(folder, run_names, getattr(args, "stack", 1) or 1)
    chunks, threads = plan_workers(args, run_names, units)
    executor = make_executor(args, folder, len(chunks))
    token = uuid.uuid4().hex[:8]
    devices = worker_devices(args, len(chunks))
    workers = [Worker(folder, [name for unit in chunk for name in unit], f"{token}-{i}", threads, units=chunk,
                      alone={name: alone[name] for unit in chunk for name in unit if name in alone},
                      cuda_devices=devices[i])
               for i, chunk in enumerate(chunks)]
    quiet = _controllers_stderr_to(folder / ".submitit" / "controllers.log") if args.executor == "local" \
        else contextlib.nullcontext()
    with quiet, executor.batch():
        jobs = [executor.submit(w) for w in workers]
    manifest["submissions"].append({"time": now(), "executor": args.executor, "token": token,
                                    "options": {k: getattr(args, k) for k in SUBMISSION_OPTIONS},
                                    "job_ids": [str(j.job_id) for j in jobs], "runs": run_names,
                                    # runs trained together as one stacked model (--stack), and why others not
                                    "stacks": [u for u in units if len(u) > 1],
                                    "trained_alone": alone_lines(alone)})
    atomic_write_json(folder / "sweep.json", manifest)
    return jobs, workers


def wait(jobs, workers, folder, run_names, out=sys.stderr, last=None):
    """Wait for the jobs, printing progress (a line each time the counts change from `last`, the line printed
    before); runs a dead worker left behind are marked failed. Returns whether a worker died without an error
    of its own (killed, out of memory), and the last progress line."""
    died = False
    pending = list(zip(jobs, workers))
    while pending:
        if pending and type(pending[0][0]).__name__ == "DebugJob":
            for job, _ in pending:
                job.result()  # in-process: runs now
        still = []
        for job, worker in pending:
            if job.done():
                died = _settle(job, worker, folder) or died
            else:
                still.append((job, worker))
        pending = still
        counts = tally(folder, run_names)
        line = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        if line != last:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", file=out, flush=True)
            last = line
        if pending:
            time.sleep(0.25)
    return died, last


# submitit's own lines in a job's error: its log lines, separators, and what it says of a job that ended
# without a result ("Job 42 (task: 0) with path ...", "has not produced any output (state: FINISHED)",
# "No error stream produced. Look at stdout: ...")
SUBMITIT_LINES = re.compile(r"\s*(submitit (INFO|WARNING)|No error stream produced|has not produced any output"
                            r"|Job \S+ \(task: \d+\) with path )")


def _job_log(job):
    """The job's log that holds its error: submitit's stderr file, or its stdout file where the stderr one is
    empty (a worker whose disk filled up may leave the error only there); the stderr file's name where
    neither can be read."""
    paths = getattr(job, "paths", None)
    files = [Path(f) for f in (getattr(paths, "stderr", None), getattr(paths, "stdout", None)) if f]
    existing = [f for f in files if f.is_file()]
    return next((f for f in existing if f.stat().st_size), (existing or files or [None])[0])


def _tail(path, size=65536):
    """The end of a text file, '' where it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _settle(job, worker, folder, out=sys.stderr):
    """A finished job whose worker died mid-run leaves its run 'running': mark it failed, with a line in its
    logs.log. Returns whether the worker died that way (killed without a word: kill -9, the out-of-memory
    killer), the one ending whose unreached runs new workers take; a worker stopped on purpose marks its run
    interrupted itself (kill -INT), or its job was cancelled (scancel)."""
    orphaned = False
    try:
        error = job.exception()
    except Exception as exc:  # submitit could not even read the outcome
        error = exc
    cancelled = error is not None and "CANCELLED" in str(error)
    if error is not None:
        # submitit's error is its whole log: its last line says what failed, unless the worker was killed
        # (kill -9, the out-of-memory killer) before it could say anything: then only submitit's own lines
        lines = [line for line in str(error).strip().splitlines()
                 if any(c.isalnum() for c in line)  # not submitit's '-----' separators
                 and not SUBMITIT_LINES.match(line)]
        error = lines[-1] if lines else "the worker stopped without an error of its own (killed? out of memory?)"
        log_file = _job_log(job)
        if log_file is not None and "No space left on device" in _tail(log_file):
            error = f"disk full ({error}): free space on that disk and resume the sweep"
        print(f"job {job.job_id} ended with an error: {error} (its log: {log_file or '?'})", file=out, flush=True)
    for name in worker.run_names:
        run_dir = RunDir(folder / name)
        owner = run_dir.claim_owner() or {}
        if owner.get("token") == worker.token and run_dir.status().get("state") in ("running", "queued"):
            orphaned = True
            why = (f"the worker process ended while this run was in progress: "
                   f"{error or 'no error reported (killed? out of memory?)'}")
            run_dir.set_status("failed", error=why)
            log_line(run_dir, why, error=True)  # (a line the disk cannot take is dropped: status.json holds it)
    return orphaned and not cancelled


def train_all(args, folder, run_names, manifest, jobs):
    """Submit the runs and wait for them; where a worker dies without a word (kill -9, the out-of-memory
    killer) and leaves runs it had not reached queued, they go to new workers, as long as each round
    finishes some (a worker stopped on purpose, kill -INT or scancel, is not replaced): a failing run never
    stops the others. `jobs` collects every job submitted (for a Ctrl-C to cancel)."""
    todo = list(run_names)
    last = None  # (a new round of workers does not say the same counts again)
    while True:
        new_jobs, workers = submit(args, folder, todo, manifest)
        jobs.extend(new_jobs)
        died, last = wait(new_jobs, workers, folder, run_names, last=last)
        left = [name for name in todo if RunDir(folder / name).status().get("state") == "queued"]
        if not (died and left and len(left) < len(todo)):
            return
        print(f"a worker ended before reaching {'runs' if len(left) > 1 else 'run'} {', '.join(left)}: "
              "new workers take them", file=sys.stderr, flush=True)
        todo = left


def _finished(job):
    try:
        return job.done()
    except Exception:
        return True


def tally(folder, run_names):
    counts = {"done": 0, "failed": 0, "interrupted": 0, "running": 0, "queued": 0}
    for name in run_names:
        state = RunDir(folder / name).status().get("state", "missing")
        counts[state] = counts.get(state, 0) + 1
    return counts


def final_report(folder, run_names, out=None):
    out = out or sys.stdout  # looked up now: bound at import, a later redirection of stdout was missed
    counts = tally(folder, run_names)
    failed = [n for n in run_names if RunDir(folder / n).status().get("state") == "failed"]
    print(f"sweep {folder}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), file=out)
    for name in failed:
        status = RunDir(folder / name).status()
        print(f"  run {name} failed: {status.get('error')}  (see {folder / name / 'logs.log'})", file=out)
    refused = {}  # planned stacks (--stack) that did not form when their runs started
    for name in run_names:
        why = RunDir(folder / name).status().get("stack_refused")
        if why:
            refused.setdefault(why, []).append(name)
    for why, names in refused.items():
        print(f"  run{'s' * (len(names) > 1)} {', '.join(names)} trained alone, not stacked: {why}", file=out)
    print(f"table: python report.py {quoted(folder)}", file=out)
    if counts["done"] < len(run_names):
        print(f"re-run what is not done: {resume_command(folder)}", file=out)
    return 0 if counts["done"] == len(run_names) else 1


# ---------------------------------------------------------------- resume

def prepare_resume(folder, grace=10.0):
    """Runs of the sweep that are not done, reset to queued (refusing runs still alive here).

    A worker that was just stopped may need a moment to exit (submitit's local controller sends SIGINT,
    then SIGKILL a second later): runs whose process is still alive are re-checked for `grace` seconds
    before the resume is refused."""
    manifest = read_json(folder / "sweep.json")
    if manifest is None:
        if not folder.is_dir():
            parent = folder.parent
            sweeps = [p.name for p in report.run_folders(parent) if (p / "sweep.json").exists()] \
                if parent.is_dir() else []
            raise SweepError(f"there is no sweep {folder}" + (f"; the sweeps in {parent}: {', '.join(sweeps)}"
                                                              if sweeps else f"; {parent} holds no sweep"))
        if (folder / "sweep.json").exists():
            raise SweepError(f"{folder / 'sweep.json'} cannot be read (damaged?): the runs' own folders are intact "
                             "(python report.py reads them), but resuming needs the manifest")
        raise SweepError(f"{folder} has no sweep.json: not a sweep folder")
    names = [run["run"] for run in manifest["runs"]]
    _wait_for(lambda: not _alive_runs(folder, names), grace)
    alive = _alive_runs(folder, names)
    if alive:
        pids = " ".join(sorted({str(pid) for _, pid in alive}))
        raise SweepError("still running on this machine: " + ", ".join(f"run {name} (pid {pid})" for name, pid in alive)
                         + "; wait for them, or stop them (Ctrl-C in the sweep that started them, or "
                         f"kill -INT {pids}: workers ignore a plain kill, SIGTERM, as submitit's jobs do) "
                         "and resume again")
    held, asked = _held_by_slurm(folder, names)
    if held:
        print("left alone, SLURM still lists the jobs that hold them: "
              + ", ".join(f"run {name} (job {job})" for name, job in held), file=sys.stderr)
    held_names = {name for name, _ in held}
    statuses = {name: RunDir(folder / name).status() for name in names}
    heard = [(name, status, age) for name, status in statuses.items()
             if (age := heard_from_elsewhere(status)) is not None
             and name not in held_names and name not in asked]  # (squeue's answer decides where it was asked)
    if heard:  # a process on another machine (a local sweep there, on a shared file system) still trains them
        print("left alone, still training on another machine (its heartbeat in status.json is recent): "
              + ", ".join(f"run {name} (pid {status.get('pid')} on {status.get('host')}, heard from "
                          f"{age:.0f} s ago)" for name, status, age in heard)
              + f"; resume again once they end, or, if that machine is gone, after {STALE_S // 60} minutes "
              "without a heartbeat", file=sys.stderr)
        held_names |= {name for name, _, _ in heard}
    todo = [name for name in names if statuses[name].get("state") != "done" and name not in held_names]
    # deleted or damaged outside the program: made again from sweep.json (a finished run's settings too, which
    # report.py reads; a run a SLURM job or another machine still holds is left to it)
    for name in [name for name in names if name not in held_names and RunDir(folder / name).config() is None]:
        _restore_run(folder, name, manifest)
    todo = [name for name in todo if RunDir(folder / name).config() is not None]
    for name in todo:
        run_dir = RunDir(folder / name)
        run_dir.release_claim()
        run_dir.set_status("queued", attempts=statuses[name].get("attempts", 0) + 1)
    return manifest, todo


def _restore_run(folder, name, manifest):
    """Make a run's folder (deleted), or its settings (config.json damaged or gone), again: from its config.py
    where that is intact (written with config.json, it holds the settings the run trained with), else from the
    manifest, as the sweep first wrote them. In that case an unfinished run's checkpoint.pt and metrics.jsonl,
    which may come from settings changed since, are set aside (renamed *.orphaned) and the run trains from the
    start. A run that cannot be made again is left out with a line saying why; the others resume."""
    run_dir = RunDir(folder / name)
    overrides = next(r.get("overrides") for r in manifest["runs"] if r["run"] == name)
    missing = not run_dir.path.exists()
    kept = None
    try:
        kept = settings_module.build(settings_module.as_written(settings_module.load_file(run_dir.file("config.py"))))
    except settings_module.SettingsError:  # (no such file, or damaged too)
        pass
    source = "its config.py" if kept is not None else "sweep.json" if "base_values" in manifest else \
        "sweep.json (the base settings an older manifest keeps)"
    set_aside = []
    try:
        run_dir.path.mkdir(exist_ok=True)
        # base_settings holds every setting there was when the sweep was made: one it lacks was added since,
        # and the sweep's runs ran at its earlier value (as their config files read back do)
        base = {**settings_module.added_since(manifest.get("base_settings") or {}),
                **manifest.get("base_values", manifest["base_settings"])}
        _write_run_settings(run_dir, base, overrides, settings=kept)
        if kept is None and run_dir.status().get("state") != "done":
            for file in ("checkpoint.pt", "metrics.jsonl"):
                if run_dir.file(file).exists():
                    run_dir.file(file).rename(run_dir.file(file + ".orphaned"))
                    set_aside.append(file)
    except (OSError, ResultsError, settings_module.SettingsError) as exc:
        print(f"run {name} left out: {run_dir.path} " + ("is missing" if missing else "has no readable config.json")
              + f" and cannot be made again from sweep.json ({exc}); restore it to resume it (its overrides: "
              f"{overrides})", file=sys.stderr)
        return
    if missing:
        print(f"run {name}: {run_dir.path} was missing; made again from {source} (overrides {overrides}): it "
              "trains from the start", file=sys.stderr)
        return
    aside = (f"; its {' and '.join(set_aside)}, which may come from other settings, set aside as "
             f"{' and '.join(f + '.orphaned' for f in set_aside)}: it trains from the start") if set_aside else \
        ", its other files kept"
    print(f"run {name}: {run_dir.path / 'config.json'} could not be read; its settings were written again from "
          f"{source} (overrides {overrides}){aside}", file=sys.stderr)


def stop_workers(folder, run_names, grace=20.0):
    """Stop this machine's workers still training runs of the sweep after their jobs were cancelled.

    submitit cancels a local job with SIGINT to its controller, which does nothing where SIGINT is ignored
    (a sweep started in the background by a script inherits that), and the controller passes nothing on.
    Each worker is then sent SIGINT itself (workers restore its default handler: the run is marked
    interrupted, its evaluations kept), then SIGKILL after `grace` seconds (the run stays 'running' with
    a dead process, which --resume takes up). Returns the pids that survived both, as text."""
    def signal_all(signum):
        for _, pid in _alive_runs(folder, run_names):
            try:
                os.kill(int(pid), signum)
            except (OSError, ValueError):
                pass

    if _alive_runs(folder, run_names):
        signal_all(signal.SIGINT)
        _wait_for(lambda: not _alive_runs(folder, run_names), grace)
    if _alive_runs(folder, run_names):
        signal_all(signal.SIGKILL)
        _wait_for(lambda: not _alive_runs(folder, run_names), 5)
    return " ".join(sorted({str(pid) for _, pid in _alive_runs(folder, run_names)}))


def _held_by_slurm(folder, run_names):
    """(run, job) of the runs marked running by a SLURM job that squeue still lists (pending or running), and
    the runs squeue answered for (listed or not); none of either when squeue cannot be asked here."""
    running = {}
    for name in run_names:
        status = RunDir(folder / name).status()
        if status.get("state") == "running" and status.get("slurm_job"):
            running[name] = str(status["slurm_job"])
    if not running or not shutil.which("squeue"):
        return [], set()
    try:  # every job of this user, one line per array task (-r), so finished jobs cannot fail the query
        answer = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-u", getpass.getuser()],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return [], set()
    if answer.returncode != 0:
        return [], set()
    listed = set(answer.stdout.split())
    return [(name, job) for name, job in running.items() if job in listed], set(running)


def _wait_for(condition, seconds):
    """Poll condition() every 0.2 s until it holds or `seconds` have passed."""
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.2)


def _alive_runs(folder, run_names):
    """(run, pid) of the runs marked running by a process that is still alive on this machine."""
    alive = []
    for name in run_names:
        status = RunDir(folder / name).status()
        if status.get("state") == "running" and holder_alive(status):
            alive.append((name, status.get("pid")))
    return alive


# ---------------------------------------------------------------- command line

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # an abbreviation such as --set would be read as --setup
    p.add_argument("--base", help="base settings file (instead of the first question)")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=AxB,AxB",
                   help="a varied setting and its values (repeatable, in grid order)")
    p.add_argument("--answers", help="file with one answer per line, exactly as typed at the questions")
    p.add_argument("--yes", "-y", action="store_true", help="queue without the final question")
    p.add_argument("--resume", metavar="EXPERIMENT_ID", help="re-queue the runs of this sweep that are not done")
    p.add_argument("--results-root", default=str(RESULTS_ROOT))
    p.add_argument("--executor", choices=("local", "slurm", "inprocess"), default=default_executor(),
                   help="local: jobs on this machine (default without sbatch); slurm: a job array; "
                        "inprocess: in this process, one run after another (debugging)")
    p.add_argument("--max-parallel", type=int, default=None,
                   help="local: jobs at once (default: the number of cores); slurm: array tasks at once "
                        "(default: no limit)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                   help="wait for the jobs (default: yes for local/inprocess, no for slurm)")
    p.add_argument("--stack", type=int, default=1, metavar="K",
                   help="train up to K runs that differ only in seed, lr, weight decay, data seed (values that "
                        "leave every tensor shape the same) together as one stacked model (default 1: one by one)")
    g = p.add_argument_group("slurm")
    g.add_argument("--partition")
    g.add_argument("--time", type=int, default=24 * 60, help="minutes per job (local: the job timeout)")
    g.add_argument("--cpus", type=int, default=4, help="cpus per task")
    g.add_argument("--mem", help="memory per node, e.g. 32GB")
    g.add_argument("--gpus-per-node", type=int, default=0,
                   help="emit a --gpus-per-node line (off by default: clusters without GRES refuse it)")
    g.add_argument("--constraint", help="node feature, e.g. a GPU type reached without GRES")
    g.add_argument("--exclusive", action="store_true")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--setup", action="append", help="shell line run before the job (e.g. conda activate)")
    g.add_argument("--runs-per-job", type=int, default=1, help="runs trained by each array task")
    g.add_argument("--job-name", default="reasoning-lab")
    p.add_argument("--set", action="append", help=argparse.SUPPRESS)  # main.py's option, named in an error
    args = p.parse_args(argv)
    if args.set:
        p.error(f"sweep.py has no --set ({' '.join(args.set)}): put fixed values in the base settings file, or "
                "give a setting one value with --vary (e.g. --vary n_epochs=1)")
    # the options typed on this command line (a resume takes the others from the recorded submission)
    args.given = {action.dest for action in p._actions for opt in action.option_strings
                  if any(a == opt or a.startswith(opt + "=") for a in argv)}
    if args.max_parallel is not None and args.max_parallel < 1:
        p.error("--max-parallel must be at least 1")
    if args.stack < 1:
        p.error("--stack must be at least 1 (1: no stacking)")
    for name, low in (("time", 1), ("cpus", 1), ("runs_per_job", 1), ("gpus_per_node", 0)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low}")
    if args.executor == "slurm" and "executor" in args.given and (why := _no_slurm()):
        p.error(why)
    if args.resume and (args.base or args.vary or args.answers):
        p.error("--resume re-queues a sweep's own runs with their recorded settings; --base, --vary and "
                "--answers cannot change them (start a new sweep for other settings)")
    if args.max_parallel is None and args.executor != "slurm":
        args.max_parallel = os.cpu_count() or 1
    return args


def main(argv=None):
    # `kill` stops the sweep like Ctrl-C: its jobs are cancelled, finished runs are kept
    with sigterm_as_interrupt():
        return _main(sys.argv[1:] if argv is None else argv)


def _main(argv):
    args = parse_args(argv)
    if environment_refused():
        return 2
    root = Path(args.results_root)
    folder = None  # the sweep's folder, once it exists
    try:
        if args.resume:
            # an id under --results-root, or the sweep folder's path as report.py takes it
            given = Path(args.resume)
            folder = given if (given / "sweep.json").exists() or len(given.parts) > 1 else root / str(args.resume)
            manifest, run_names = prepare_resume(folder)
            reuse_submission_options(args, manifest)
            left_out = [r["run"] for r in manifest["runs"] if RunDir(folder / r["run"]).config() is None]
            if not run_names:
                if left_out:
                    return 1  # each said why above
                held = [r["run"] for r in manifest["runs"] if RunDir(folder / r["run"]).status().get("state") != "done"]
                if held:  # (left alone above, with why: a SLURM job or another machine still trains them)
                    print(f"nothing to resume now: run{'s' if len(held) > 1 else ''} {', '.join(held)} of {folder} "
                          f"{'are' if len(held) > 1 else 'is'} still held (see above); resume again once "
                          f"{'they end' if len(held) > 1 else 'it ends'}", file=sys.stderr)
                    return 1
                print(f"every run of {folder} is done; nothing to resume")
                return 0
            print(f"resuming {len(run_names)} run{_s(run_names)} of {folder}: {', '.join(run_names)}", file=sys.stderr)
        else:
            if args.answers:
                try:
                    lines = Path(args.answers).read_text(encoding="utf-8").splitlines()
                except OSError as exc:
                    raise SweepError(f"cannot read answers file {args.answers}: {exc}")
                asker = ScriptedAsker([line for line in lines if line.strip()])
            elif args.base:
                asker = ScriptedAsker(flags_to_answers(args.base, args.vary))
            elif args.vary:
                raise SweepError("--vary needs --base FILE: the settings file whose values it varies")
            else:
                if not sys.stdin.isatty():
                    raise SweepError("no terminal to ask the questions on: pass --base FILE --vary NAME=AxB "
                                     "... --yes, or --answers FILE --yes")
                asker = QuestionaryAsker()
            if isinstance(asker, ScriptedAsker) and not args.yes and not _ends_with_yes(asker):
                collect(ScriptedAsker(asker.answers), yes=True)  # a mistake in the grid is said first
                raise SweepError("add --yes (or end the answers with y) to queue without a terminal")
            ensure_writable(root, "choose another --results-root or fix its permissions")
            plan = collect(asker, yes=args.yes)
            if args.yes:  # no confirmation question showed it
                print(plan.description, file=sys.stderr)
            facts = {"kind": args.executor, "max_parallel": args.max_parallel}
            _, folder, manifest = create_experiment(plan, root, facts)
            run_names = [r["run"] for r in manifest["runs"]]
            print(f"queued {len(run_names)} job{_s(run_names)} in {folder}", file=sys.stderr)
        should_wait = args.wait if args.wait is not None else args.executor != "slurm"
        if not should_wait:
            jobs, _ = submit(args, folder, run_names, manifest)
            ids = ", ".join(str(j.job_id) for j in jobs)
            print(f"submitted {len(jobs)} job{_s(jobs)} ({ids}); follow with: python report.py {quoted(folder)}")
            return 0
        jobs = []
        try:
            train_all(args, folder, run_names, manifest, jobs)
        except (KeyboardInterrupt, OSError) as stop:
            if isinstance(stop, OSError) and stop.filename is None:
                raise  # not a file of the sweep's (a closed pipe, a terminal): not ours to explain
            left = _stop_jobs(jobs, folder, run_names)
            stopped = f"workers {left} would not stop: stop them with kill -9 {left}; " if left else ""
            if isinstance(stop, OSError):  # the results folder turned read-only or full while the sweep ran
                print(f"error: {_os_problem(stop)}: {stop.filename}; finished runs are kept in {folder}; {stopped}"
                      f"fix that and resume with: {resume_command(folder)}", file=sys.stderr)
                return 2
            print(f"\ninterrupted: finished runs are kept in {folder}; {stopped}resume with: "
                  f"{resume_command(folder)}", file=sys.stderr)
            return exit_code(stop)
        # the whole sweep's state (a resume trains some of its runs; the others were done before)
        code = final_report(folder, [run["run"] for run in manifest["runs"]])
        return 1 if args.resume and left_out else code
    except Cancelled:
        print("nothing queued")
        return 0
    except (SweepError, settings_module.SettingsError, ResultsError) as exc:
        print("error: " + str(exc).replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    except OSError as exc:  # a file of the sweep's cannot be written (read-only, full) before its runs start
        if exc.filename is None:
            raise
        print(f"error: {_os_problem(exc)}: {exc.filename}; files already written are intact"
              + (f"; fix that and resume with: {resume_command(folder)}" if folder and (folder / "sweep.json").exists()
                 else "; fix that and run sweep.py again"), file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        if folder is not None and (folder / "sweep.json").exists():  # a second Ctrl-C during the first's cleanup
            print(f"\ninterrupted: finished runs are kept in {folder}; a second stop cut the workers' shutdown "
                  f"short, so some may still be training (python report.py {quoted(folder)} shows them); resume with: "
                  f"{resume_command(folder)}", file=sys.stderr)
        else:
            print("\nnothing queued", file=sys.stderr)
        return exit_code(stop)


def _os_problem(exc):
    return "disk full" if disk_full(exc, exc.filename) else (exc.strerror or str(exc))


def _stop_jobs(jobs, folder, run_names):
    """Cancel the jobs and stop this machine's workers of the sweep; the pids that would not stop, as text."""
    for job in jobs:
        try:
            job.cancel(check=False)
        except Exception:
            pass
    # the cancel reaches the workers at once where SIGINT is honoured; where it is not (a sweep started in
    # the background by a script), every second of waiting is another run trained
    _wait_for(lambda: all(_finished(job) for job in jobs) and not _alive_runs(folder, run_names), 1.5)
    left = stop_workers(folder, run_names)
    _wait_for(lambda: all(_finished(job) for job in jobs), 10)
    return left


def _s(items):
    """The plural s of a count of items."""
    return "" if len(items) == 1 else "s"


def _ends_with_yes(asker):
    """An answers file may end with the y a person would type at the last question."""
    return bool(asker.answers) and asker.answers[-1].strip().lower() in ("y", "yes")


if __name__ == "__main__":
    sys.exit(main())
