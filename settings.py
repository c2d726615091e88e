"""Settings: load, validate and write back the `name = value` files every run is described by.

A settings file is a Python file of `name = value` lines (the format the research codebases' users know)
or a JSON object. Values are literals (numbers, strings, booleans, None, lists, dicts) or arithmetic on
numbers such as `10 * 1000`; nothing is executed. Each task declares its settings as a dataclass built
from `setting(...)` fields; validation refuses unknown names (suggesting the closest), wrong types and
impossible values, all before any work starts, and reports every problem at once.
"""
import ast
import dataclasses
import difflib
import json
import math
import operator
import re
import types
import typing
from pathlib import Path

CURLY_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


class SettingsError(ValueError):
    """A user mistake in settings: printed as a message, never as a traceback."""

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def setting(default, help, choices=None, low=None, high=None):
    """A dataclass field with the facts validation and the written config need."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "low": low, "high": high}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def with_defaults(**defaults):
    """Class decorator making a task's settings dataclass, with new defaults for inherited settings.

    A task changes the default of a common setting here instead of re-declaring the field, so the help
    text, type and limits stay the common ones:

        @with_defaults(n_epochs=64, batch_size=256)
        class Settings(CommonSettings):
            N: int = setting(50, "vocabulary size")
    """
    def make(cls):
        inherited = {}
        for base in reversed(cls.__mro__[1:]):
            if dataclasses.is_dataclass(base):
                inherited.update({f.name: f for f in dataclasses.fields(base)})
        annotations = cls.__dict__.get("__annotations__", {})
        cls.__annotations__ = annotations
        for name, value in defaults.items():
            if name not in inherited:
                raise TypeError(f"{cls.__qualname__}: no inherited setting {name!r} to give a default")
            if name in annotations:
                raise TypeError(f"{cls.__qualname__}: {name!r} is declared in the class; give its default there")
            field = inherited[name]
            meta = field.metadata
            annotations[name] = field.type
            setattr(cls, name, setting(value, meta["help"], meta["choices"], meta["low"], meta["high"]))
        return dataclasses.dataclass(cls)
    return make


BUDGETS = ("n_epochs", "n_steps", "n_samples")
# groups of settings of which at most one may be given -> what they set
EXCLUSIVE = {BUDGETS: "training budget",
             ("eval_every", "eval_every_steps", "eval_every_samples"): "evaluation interval",
             ("checkpoint_every", "checkpoint_every_steps", "checkpoint_every_samples"): "checkpoint interval"}
EPOCH_UNITS = {"n_epochs": "n", "eval_every": "eval_every", "checkpoint_every": "checkpoint_every"}


@dataclasses.dataclass
class CommonSettings:
    """Settings every task understands: the training loop, seeding, device and evaluation cadence."""
    task: str = setting("target_functions", "the research programme (a module of tasks/)")
    seed: int = setting(0, "seed of everything random in the run (data, init, batch order); 0 .. 2**32 - 1, "
                        "numpy's range", low=0, high=2 ** 32 - 1)
    # ---- the training budget: one of these, in the unit the programme's papers use
    n_epochs: int | None = setting(10, "training epochs: passes over the fixed training set", low=1)
    n_steps: int | None = setting(None, "training budget in optimiser steps (instead of n_epochs)", low=1)
    n_samples: int | None = setting(None, "training budget in samples drawn: a stream's steps = ceil(n_samples / "
                                    "batch_size), its last batch holding what is left; a fixed set's = whole "
                                    "epochs (each ending with its partial batch), then whole batches up to the "
                                    "rest (up to batch_size - 1 samples more)",
                                    low=1)
    batch_size: int = setting(20, "training batch size; 0 means the whole training set (full batch)", low=0)
    lr: float = setting(1e-3, "peak learning rate", low=0.0)
    eta_min: float = setting(0.0, "final learning rate of the linear and cosine schedules", low=0.0)
    weight_decay: float = setting(0.0, "weight decay: decoupled for adamw, coupled L2 for adam and sgd", low=0.0)
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 disables clipping", low=0.0)
    eval_every: int | None = setting(1, "evaluate every this many epochs (always before the first step and "
                                     "after the last; None: only then)", low=1)
    eval_every_steps: int | None = setting(None, "evaluate every this many optimiser steps (instead of "
                                           "eval_every)", low=1)
    eval_every_samples: int | None = setting(None, "evaluate each time this many more samples have been "
                                             "drawn (instead of eval_every)", low=1)
    eval_batch_size: int = setting(4096, "batch size of evaluations", low=1)
    device: str = setting("auto", "where to train", choices=("auto", "cpu", "cuda"))
    mixed_precision: str = setting("auto", "autocast: auto = bf16 on GPU (none over a model a task casts to "
                                   "bf16 itself, as parity_cot's model_dtype), none on CPU; fp16 on a GPU only",
                                   choices=("auto", "no", "bf16", "fp16"))
    checkpoint_every: int = setting(0, "save a resumable checkpoint every this many epochs (0: never)", low=0)
    checkpoint_every_steps: int | None = setting(None, "save a resumable checkpoint every this many optimiser "
                                                 "steps (instead of checkpoint_every)", low=1)
    checkpoint_every_samples: int | None = setting(None, "save a resumable checkpoint each time this many more "
                                                   "samples have been drawn (instead of checkpoint_every)", low=1)
    progress: str = setting("auto", "progress bar: auto = only when a person watches a terminal",
                            choices=("auto", "on", "off"))
    threads: int = setting(1, "torch CPU threads of the run; 0: every core the process is given (torch's "
                           "default, or the worker's share of the machine in a sweep). One is fastest for "
                           "models this small, and a repeat is exact only with the same count", low=0)
    # ---- optimiser (optim.py; these choices are optim.OPTIMIZERS and optim.SCHEDULES)
    optim: str = setting("adamw", "optimiser: adamw (decoupled weight decay), adam (coupled L2 weight decay), "
                         "sgd (momentum), muon (Muon on the model's matrices, Adam on the rest)",
                         choices=("adamw", "adam", "sgd", "muon"))
    fused: bool = setting(True, "adamw, adam, sgd: torch's fused kernel, one for all parameters (real tensors "
                          "only); False: torch's default implementation (the numbers differ in the last bits)")
    no_decay_bias_norm: bool = setting(False, "no weight decay on biases and normalisation weights (every "
                                       "parameter of fewer than 2 dimensions), as HF Trainer")
    sgd_momentum: float = setting(0.9, "optim sgd: momentum", low=0.0, high=1.0)
    muon_momentum: float = setting(0.99, "optim muon: moving-average coefficient of the gradient", low=0.0, high=1.0)
    lr_schedule: str = setting("cosine", "learning rate per optimiser step: constant (or none); linear or cosine "
                               "from lr down to eta_min at the end of training; step, exponential, multistep: "
                               "lr_gamma per lr_step_size epochs, per epoch, at lr_milestones",
                               choices=("constant", "none", "linear", "cosine", "step", "exponential", "multistep"))
    warmup_steps: int = setting(0, "optimiser steps of linear warmup from 0 to lr before a constant, linear or "
                                "cosine schedule", low=0)
    lr_step_size: int = setting(1000, "lr_schedule step: epochs between decays", low=1)
    lr_gamma: float = setting(0.1, "lr_schedule step, multistep: factor per decay; exponential: factor per epoch",
                              low=0.0)
    lr_milestones: list[int] = setting([], "lr_schedule multistep: epochs at which lr is multiplied by lr_gamma")

    def gpu_autocast(self):
        """What mixed_precision = 'auto' means on a GPU with bf16: bf16 autocast. A task whose settings cast
        the model itself, as its original did without autocast, answers 'no'."""
        return "bf16"

    def training_source(self):
        """'fixed': batches of a fixed training set, epoch after epoch; 'stream': a fresh batch drawn every
        step (no epochs). Tasks whose data is a stream override this."""
        return "fixed"

    def check(self):
        """Cross-setting checks; returns a list of problems. Tasks extend it."""
        problems = []
        stream = self.training_source() == "stream"
        for group in EXCLUSIVE:
            given = [name for name in group if getattr(self, name)]
            if len(given) > 1:
                problems.append(" and ".join(f"{n} = {getattr(self, n)!r}" for n in given)
                                + f" both set the {EXCLUSIVE[group]}; keep one and set the others to None")
            if stream and given and given[0] in EPOCH_UNITS:
                name = given[0]
                problems.append(f"{name} = {getattr(self, name)!r} counts epochs, but this run draws a fresh "
                                f"training batch every step and has no epochs; use {EPOCH_UNITS[name]}_steps "
                                f"or {EPOCH_UNITS[name]}_samples instead")
        if stream and self.batch_size == 0:
            problems.append("batch_size = 0 takes the whole training set as one batch, but this run draws a fresh "
                            "training batch every step and has no set; give a batch size > 0")
        if not any(getattr(self, name) for name in BUDGETS):
            problems.append("no training budget: set one of " + ", ".join(BUDGETS))
        if self.eta_min > self.lr and self.lr_schedule in ("linear", "cosine"):
            problems.append(f"eta_min = {self.eta_min!r} is larger than lr = {self.lr!r}; "
                            f"the {self.lr_schedule} schedule decays from lr down to eta_min")
        # ---- optimiser (optim.py)
        if self.warmup_steps and self.lr_schedule in ("step", "exponential", "multistep"):
            problems.append(f"warmup_steps = {self.warmup_steps} cannot go with lr_schedule = {self.lr_schedule!r}: "
                            "warmup leads into a constant, linear or cosine schedule; set warmup_steps = 0 or "
                            "choose one of those")
        elif self.warmup_steps and self.n_steps and self.warmup_steps >= self.n_steps:
            problems.append(f"warmup_steps = {self.warmup_steps} is not shorter than n_steps = {self.n_steps}: the "
                            "rate would never reach lr; lower warmup_steps or raise n_steps")
        if stream and self.lr_schedule in ("step", "exponential", "multistep"):
            problems.append(f"lr_schedule = {self.lr_schedule!r} is set in epochs, but this run draws a fresh "
                            "training batch every step and has no epochs; choose constant, linear or cosine")
        if self.lr_schedule == "multistep":
            if not self.lr_milestones:
                problems.append("lr_schedule = 'multistep' needs lr_milestones, e.g. [1000, 2000]")
            elif sorted(set(self.lr_milestones)) != self.lr_milestones or self.lr_milestones[0] < 1:
                problems.append(f"lr_milestones = {self.lr_milestones} must be increasing epochs >= 1")
        return problems

    def no_effect(self, names, why):
        """'<name> = <value> has no effect<why>' for each of `names` set away from its default: the note of a
        setting that another one makes irrelevant (notes())."""
        fields = fields_of(type(self))
        return [f"{name} = {getattr(self, name)!r} has no effect{why}" for name in names
                if getattr(self, name) != default_of(fields[name])]

    def notes(self):
        """Settings that another setting makes irrelevant: noted in logs.log and summary.json, not refused
        (a sweep may vary the setting that switches them on or off). Tasks extend it."""
        notes = []
        # against the task's default, not 0: target_functions' default eta_min is 1e-5
        if (self.eta_min != fields_of(type(self))["eta_min"].default
                and self.lr_schedule not in ("linear", "cosine")):
            notes.append(f"eta_min = {self.eta_min!r} has no effect with lr_schedule = {self.lr_schedule!r}: it is "
                         "the end of the linear and cosine schedules")
        cores = _cores()
        if self.threads > cores:
            notes.append(f"threads = {self.threads} is more than the {cores} cores this process may use: the "
                         "threads contend and the run is slower than with fewer (the numbers are those of "
                         f"threads = {self.threads} all the same)")
        if self.lr_milestones and self.lr_schedule != "multistep":
            notes.append(f"lr_milestones = {self.lr_milestones!r} has no effect with lr_schedule = "
                         f"{self.lr_schedule!r}: they apply to 'multistep'")
        return notes


def _cores():
    """Cores this process may run on (its CPU affinity where the system tells it, else the machine's)."""
    import os
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------- literal values

_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Mod: operator.mod}


def _literal(node):
    """ast.literal_eval plus arithmetic on numbers (e.g. `10 * 1000`, `2 ** 10`); nothing else runs."""
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        left, right = _literal(node.left), _literal(node.right)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            raise ValueError("arithmetic is allowed on numbers only")
        return _ARITH[type(node.op)](left, right)
    return ast.literal_eval(node)


def parse_value(text):
    """A value typed by a person: a Python literal, else a bare string.

    Curly quotes are straightened; true/false/none in any case mean the Python constants.
    """
    text = text.strip().translate(CURLY_QUOTES)
    lowered = text.lower()
    if lowered in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[lowered]
    try:
        return _literal(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError):
        return text


def load_file(path):
    """Read a settings file (Python `name = value` lines, or JSON) into a dict, in file order."""
    path = Path(path)
    if path.is_dir():
        raise SettingsError(f"{path} is a folder, not a settings file: name a file in it, e.g. its config.py")
    if not path.is_file():
        raise SettingsError(f"settings file not found: {path}")
    try:
        # utf-8-sig: a byte-order mark some editors write at the start is not part of the first line
        text = path.read_text(encoding="utf-8-sig").translate(CURLY_QUOTES)
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{path}: not valid JSON: {exc}")
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: a JSON settings file holds one object of name: value pairs")
        return data
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise SettingsError(f"{path}, line {exc.lineno}: not a `name = value` line: {exc.msg}")
    values, problems, lines = {}, [], {}
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            name = stmt.targets[0].id
            if name in lines:  # the last would win unseen: say which line the user meant
                problems.append(f"{path}, line {stmt.lineno}: {name} is set a second time (first on line "
                                f"{lines[name]}); keep one of the two")
            lines.setdefault(name, stmt.lineno)
            try:
                values[name] = _literal(stmt.value)
            except (ValueError, TypeError, ZeroDivisionError, OverflowError):
                problems.append(f"{path}, line {stmt.lineno}: the value of {name} is not a "
                                "literal (numbers, quoted strings, True/False/None, lists, dicts)")
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring
        else:
            problems.append(f"{path}, line {stmt.lineno}: expected `name = value`, found "
                            f"{ast.get_source_segment(text, stmt)!r}")
    if problems:
        raise SettingsError(problems)
    return values


# ---------------------------------------------------------------- schema and validation

def fields_of(settings_class):
    """name -> dataclasses.Field (settings modules use real annotations, so `.type` is a type)."""
    return {f.name: f for f in dataclasses.fields(settings_class)}


def _type_name(hint):
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "")


def conform(hint, value):
    """Return value converted to `hint` where that loses nothing (int -> float), else raise TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return conform(arg, value)
            except TypeError:
                pass
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
            return int(value)  # 1e4 written for 10000
        raise TypeError
    if origin is list:
        if isinstance(value, (list, tuple)):
            return [conform(args[0], v) for v in value] if args else list(value)
        raise TypeError
    if origin is dict or hint is dict:
        if isinstance(value, dict):
            return dict(value)
        raise TypeError
    if isinstance(value, hint):
        return value
    raise TypeError


def suggest(name, valid):
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else "valid names: " + ", ".join(sorted(valid))


def check_value(field, value):
    """Converted value of one setting, or raise SettingsError naming the setting and what is valid."""
    try:
        value = conform(field.type, value)
    except TypeError:
        raise SettingsError(f"setting {field.name} = {value!r} has the wrong type: expected "
                            f"{_type_name(field.type)} ({field.metadata['help']})")
    meta = field.metadata
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"setting {field.name} = {value!r} is not a finite number ({meta['help']})")
    if meta["choices"] and value not in meta["choices"]:
        raise SettingsError(f"setting {field.name} = {value!r} is not one of: "
                            + ", ".join(repr(c) for c in meta["choices"])
                            + (f" ({suggest(str(value), [str(c) for c in meta['choices']])})"
                               if isinstance(value, str) else ""))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta["low"] is not None and value < meta["low"]:
            raise SettingsError(f"setting {field.name} = {value!r} is below its minimum {meta['low']!r} "
                                f"({meta['help']})")
        if meta["high"] is not None and value > meta["high"]:
            raise SettingsError(f"setting {field.name} = {value!r} is above its maximum {meta['high']!r} "
                                f"({meta['help']})")
    return value


def build(values, settings_class=None):
    """Validated settings object from a dict of raw values; every problem reported at once.

    settings_class defaults to the dataclass of the task named by values['task'].
    """
    if settings_class is None:
        import tasks
        task = values.get("task", CommonSettings.task)
        try:
            settings_class = tasks.get(task).Settings
        except tasks.UnknownTask as exc:
            raise SettingsError(str(exc))
    fields = fields_of(settings_class)
    problems, clean, bad = [], {}, []
    for group in EXCLUSIVE:  # a budget or interval given in one unit: the defaults of the others step aside
        if any(values.get(name) for name in group):
            clean.update({name: _unset(name) for name in group if name not in values and name in fields})
    unknown = [name for name in values if name not in fields]
    task = values.get("task", CommonSettings.task)
    owner = _owner_of(unknown, task) if len(unknown) > 1 else None
    if owner:  # another programme's settings file with its task changed: one line, not one per setting
        problems.append(f"settings {', '.join(unknown)} belong to task '{owner}', not to task '{task}': a "
                        f"settings file serves one task; start from a file of task '{task}' (see conf/), or list "
                        f"its settings with: python main.py --help-settings --set task={task}")
    for name, value in values.items():
        if name not in fields:
            if not owner:
                problems.append(f"unknown setting '{name}' for task '{task}'; " + suggest(name, list(fields)))
            continue
        try:
            clean[name] = check_value(fields[name], value)
        except SettingsError as exc:
            problems.extend(exc.problems)
            bad.append(name)
    # every problem at once: the checks across settings too, where a value is invalid on the valid values
    # (the invalid ones at their defaults), keeping those that do not name an invalid setting
    try:
        # (with a misspelled name too, the checks across the others run: every problem at once; not where the
        # names are another programme's, whose checks here would only say the same again)
        result = None if owner else settings_class(**clean)
        across = result.check() if result is not None else []
    except Exception:  # noqa: BLE001 (values that only make sense together: the first problems suffice)
        if not problems:
            raise
        result, across = None, []
    problems += [p for p in across if not any(re.search(rf"\b{re.escape(name)}\b", p) for name in bad)]
    if problems:
        raise SettingsError(problems)
    return result


def _owner_of(names, task):
    """The one other task whose settings include every name in `names`, or None."""
    import tasks
    owners = []
    for other in tasks.TASK_MODULES:
        if other != task and all(name in fields_of(tasks.get(other).Settings) for name in names):
            owners.append(other)
    return owners[0] if len(owners) == 1 else None


def _unset(name):
    return 0 if name == "checkpoint_every" else None


def merge(base, overrides):
    """base values with overrides on top. An override of a budget or an interval replaces the base's value
    of the same group in another unit (`--set n_steps=100` on a file with n_epochs = 64 trains 100 steps)."""
    values = dict(base)
    for group in EXCLUSIVE:
        if any(overrides.get(name) for name in group):
            for name in group:
                values.pop(name, None)
    values.update(overrides)
    return values


# Settings added after runs were made that behaved otherwise: task -> {setting: the value that behaves as those
# runs did}. A run's own config written before the setting existed lacks it; as_written gives it this value.
ADDED_SINCE = {
    "parity_cot": {"fresh_inputs": "independent",  # e976c33 (2026-12-02): the distinct stream
                   "dropout_noise": "torch"},  # b533b35 (2026-12-02): the counter masks
}


def added_since(values):
    """{setting: its earlier value} for the settings added since `values` (a run's or a sweep's whole settings)
    were written, which they lack. Needs no task module (report.py runs without torch)."""
    added = ADDED_SINCE.get(values.get("task", CommonSettings.task), {})
    return {name: value for name, value in added.items() if name not in values}


def as_written(values):
    """A run's own settings (its config.json, or the config.py beside it) as the code that wrote them ran: a
    setting added since, which that file lacks, takes its ADDED_SINCE value, not today's default; so the run
    resumes, repeats, groups and plots as it began (RunDir.config gives them so)."""
    return {**added_since(values), **values} if isinstance(values, dict) else values


def is_run_config(path):
    """Whether a settings file is a run's own (config.py or config.json in a run's folder, beside status.json)."""
    path = Path(path)
    return path.name in ("config.py", "config.json") and (path.parent / "status.json").is_file()


def load(path=None, overrides=None):
    """Settings from a file (or the task's defaults when path is None) with overrides applied on top; a run's
    own config file as the code that wrote it ran (as_written)."""
    values = load_file(path) if path is not None else {}
    if path is not None and is_run_config(path):
        values = as_written(values)
    return build(merge(values, overrides or {}))


def parse_override(text):
    """`name=value` from the command line -> (name, parsed value)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise SettingsError(f"--set expects name=value, got {text!r}")
    return name.strip(), parse_value(raw)


# ---------------------------------------------------------------- writing back

def as_dict(settings):
    return dataclasses.asdict(settings)


def to_python(settings, header=""):
    """The settings as a `name = value` file that `main.py --config` accepts, with each setting's help."""
    lines = [f"# {line}" for line in header.splitlines()]
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        lines.append(f"{f.name} = {value!r}  # {f.metadata['help']}")
    return "\n".join(lines) + "\n"


def default_of(f):
    """A dataclass field's default value (a list's from its factory)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def describe(settings_class):
    """One line per setting: name, type, default, help (for --help-settings and the prompts)."""
    rows = []
    for name, f in fields_of(settings_class).items():
        default = default_of(f)
        choices = f.metadata["choices"]
        allowed = f" (one of: {', '.join(map(repr, choices))})" if choices else ""
        rows.append(f"  {name:<22} {_type_name(f.type):<14} default {default!r:<14} {f.metadata['help']}{allowed}")
    return "\n".join(rows)
