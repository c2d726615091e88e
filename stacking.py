"""Replicates of one shape trained together as one stacked model (the runs of a sweep that differ only in
values that leave every tensor shape the same: seed, data seed, learning rate, weight decay, clipping).

    outcomes = stacking.run_folders([path_a, path_b, path_c])   # what worker.py calls for `sweep.py --stack K`

Each member is built exactly as its solo run would be (its own seed before its data and before its model,
its own task object, data, training source, optimiser and schedule), then the K models are stacked along a
leading dimension (torch.func.stack_module_state) and one forward and backward serves them all:
torch.func.vmap over functional_call of the task's own training_loss and evaluate_batch. What a member's
task keeps as tensors (tables, a window of training accuracies) is stacked the same way and handed to the
task inside vmap, so the task code runs unchanged. Per member: its data order or sample stream, its learning
rate schedule and weight decay (a stacked Adam / AdamW / SGD with per-member hyper-parameters, written as
torch's single-tensor implementations), its gradient clipping (the norm of its own slices), its evaluations,
metrics.jsonl, summary.json, status.json and checkpoint.pt, in the formats of a solo run: a member's
checkpoint resumes alone or in a stack. A member whose loss turns non-finite fails alone (its status says why,
as a solo run's would) and is dropped from the stack; the others go on.

What stops a stack is said in one line, and the runs are then trained one by one: a task whose model is not
stackable, settings that differ in a value that may change a shape or the computation, dropout from torch's
generator (vmap would draw other random numbers than the solo run: any dropout on a GPU; on a CPU, all but
parity's counter noise), an optimiser other than adam/adamw/sgd, or tensors of different shapes. Members
that resume from different steps (a member that failed early keeps an older checkpoint) stack by step.

Each member is built by training.build_run, as a solo run is, and the stack is trained by training.loop,
the one loop: `Stack` supplies its step (one forward and backward for all members), evaluations and
checkpoints, as training.Solo does for one run. The numbers of a member equal its solo run's within
floating-point reordering (batched kernels sum in another order): tests/test_stacking.py states the
tolerance it checks.
"""
import contextlib
import copy
import math
import time
import traceback
import warnings

import torch
from torch.utils import _pytree as pytree

import dataloaders
import settings as settings_module
import tasks
import training
from results import ResultsError, RunDir, close_logger, out_of_time, quoted, run_logger

# torch 2.13's sdpa CPU kernel has no vmap batching rule: vmap runs it member by member (measured and said
# in the README), and would warn about it once per run
warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented the "
                        "batching rule", category=UserWarning)

# settings that a stack's members may differ in: none of them changes a tensor's shape or the computation's
# structure (a task adds its own in Task.stack_varies, e.g. data_seed)
STACK_VARIES = ("seed", "lr", "eta_min", "weight_decay", "max_grad_norm", "progress")
STACKABLE_OPTIMIZERS = ("adam", "adamw", "sgd")


class NotStackable(Exception):
    """Why these runs cannot train as one stack (one line); they are then trained one by one."""


# ---------------------------------------------------------------- which runs stack

def refusal(settings):
    """Why a run cannot be a member of any stack (one line), or None."""
    task = tasks.get(settings.task)
    if not getattr(task, "stackable", False):
        return f"task {settings.task}'s model does not stack: " + (getattr(task, "stack_note", "") or "not supported")
    if settings.optim not in STACKABLE_OPTIMIZERS:
        return f"optim = {settings.optim!r} does not stack (stacked optimisers: {', '.join(STACKABLE_OPTIMIZERS)})"
    why = task.stack_refusal(settings)
    if why is None and settings.mixed_precision == "fp16":
        why = ("mixed_precision = 'fp16' scales each run's loss by its own GradScaler, which a stack's one backward "
               "does not have (members would train unscaled: gradients underflow, overflow steps are applied); use "
               "'bf16' or 'no' to stack")
    if why is None and getattr(settings, "dropout", 0):
        if getattr(settings, "dropout_noise", "torch") != "counter":
            why = (f"dropout = {settings.dropout} draws random masks from torch's generator, which a stacked member "
                   "would draw differently from its solo run; set dropout = 0 (or dropout_noise = 'counter', where "
                   "the task has it) to stack")
        elif settings.device != "cpu" and torch.cuda.is_available():
            # the counter noise is the CPU forward's; on a GPU the model's own nn.Dropout draws (and vmap refuses)
            why = (f"dropout = {settings.dropout} on a GPU draws torch's masks (the counter noise is drawn on CPU "
                   "only), which a stacked member would draw differently from its solo run; set dropout = 0 or "
                   "device = 'cpu' to stack")
    return why


def reduced_precision(settings, accelerator):
    """The setting that makes a run compute in 16 bits ('model_dtype = ...', 'mixed_precision = ...', from
    the precision the accelerator resolved), or None for float32."""
    if getattr(settings, "model_dtype", "float32") not in ("float32", None):
        return f"model_dtype = {settings.model_dtype!r}"
    if accelerator.mixed_precision != "no":
        return f"mixed_precision = {settings.mixed_precision!r}" + (
            f" ({accelerator.mixed_precision} here)" if settings.mixed_precision == "auto" else "")
    return None


def stack_key(settings):
    """The settings that must be equal within a stack (repr of those not in the varying set)."""
    varies = set(STACK_VARIES) | set(tasks.get(settings.task).stack_varies)
    return repr(sorted((k, v) for k, v in settings_module.as_dict(settings).items() if k not in varies))


def differences(a, b):
    """Names of the settings (outside the varying set) in which two runs differ."""
    varies = set(STACK_VARIES) | set(tasks.get(a.task).stack_varies)
    da, db = settings_module.as_dict(a), settings_module.as_dict(b)
    return [k for k in da if k not in varies and da.get(k) != db.get(k)]


def plan_stacks(runs, k):
    """Group runs into stacks of at most k. runs: [(name, settings)] in sweep order. Returns (units, alone):
    units, each a list of run names trained together (a single name: trained alone), in the order of their
    first run; alone, {name: why} of the runs trained alone."""
    groups, order, alone = {}, [], {}
    for name, settings in runs:
        why = refusal(settings)
        if why:
            order.append([name])
            alone[name] = why
            continue
        key = stack_key(settings)
        if key not in groups:
            groups[key] = []
            order.append(groups[key])
        groups[key].append((name, settings))
    units = []
    for group in order:
        if group and isinstance(group[0], str):  # a refused run, already said why
            units.append(group)
            continue
        count = -(-len(group) // k)  # stacks of at most k, as even as possible (5 runs, K = 4: 3 + 2)
        sizes = [len(group) // count + (i < len(group) % count) for i in range(count)]
        names = [name for name, _ in group]
        for size in sizes:
            units.append(names[:size])
            names = names[size:]
        if sizes[-1] == 1 and k > 1:
            name, mine = group[-1]
            if len(group) > 1:
                alone[name] = f"the {len(group) - 1} other runs of its shape fill stacks of at most {k}"
                continue
            other = next(((n, s) for n, s in runs if n != name and not refusal(s)), None)
            if other is None:
                alone[name] = "no other run of the sweep can stack"
            else:
                alone[name] = (f"no other run can stack with it (it differs from run {other[0]} in "
                               f"{', '.join(differences(mine, other[1]))})")
    return units, alone


# ---------------------------------------------------------------- running member folders (as main.run does)

def run_folders(paths, echo=False):
    """Train the runs in folders `paths` (configs already written, as a sweep writes them) as one stack and
    return {path: 'done' | 'failed'}. A refused stack trains its runs one by one (main.run_folder); runs that
    resume from different steps stack by step."""
    started = time.time()
    members, outcome = [], {}
    for path in paths:
        run_dir = RunDir(path)
        try:
            values = run_dir.config()
            if values is None:
                raise ResultsError(f"{run_dir.path} has no readable config.json")
            members.append((run_dir, settings_module.build(values)))
        except Exception as exc:  # noqa: BLE001 - the run fails alone, as the worker marks a solo run
            outcome[str(path)] = "failed"
            run_dir.set_status("failed", error=f"{type(exc).__name__}: {exc}")
    why = None
    if len(members) < 2:
        why = "fewer than two runs left to stack"
    else:
        why = next((f"run {r.path.name}: {w}" for r, s in members if (w := refusal(s))), None)
        if why is None:
            key = stack_key(members[0][1])
            odd = next(((r, s) for r, s in members[1:] if stack_key(s) != key), None)
            if odd:
                why = (f"run {odd[0].path.name} differs from run {members[0][0].path.name} in "
                       f"{', '.join(differences(odd[1], members[0][1]))}")
    if why is None:
        by_step = {}
        for run_dir, _ in members:
            by_step.setdefault(_resumed_step(run_dir), []).append(run_dir.path)
        if len(by_step) > 1:  # e.g. a member that failed early kept an older checkpoint than the others
            where = {step: "an unreadable checkpoint" if step is None else f"step {step}" for step in by_step}
            print(f"runs {', '.join(r.path.name for r, _ in members)} resume from different steps ("
                  + "; ".join(f"{where[step]}: run{'s' * (len(group) > 1)} {', '.join(p.name for p in group)}"
                              for step, group in by_step.items())
                  + "): the runs of each step stack apart", flush=True)
            for step, group in by_step.items():
                outcome.update(run_folders(group, echo) if len(group) > 1 else _one_by_one(
                    group, echo, f"it resumes from {where[step]}, no other run of its stack from there"))
                if any(out_of_time(RunDir(path)) for path in group):
                    break  # the job's time is up: the groups not reached stay queued for a resume
            return outcome
    if why is None:
        try:  # K models and K batches at once, on the machine that trains
            training.check_memory(members[0][1], copies=len(members))
        except training.MemoryRefused as exc:
            why = str(exc)
    if why is None:
        logs = []
        for run_dir, settings in members:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            run_dir.write_settings(settings, header=f"Resolved settings of the run in {run_dir.path}.\n"
                                   f"Repeat it with: python main.py --config {quoted(run_dir.path / 'config.py')}")
            run_dir.set_status("running")
            log = run_logger(run_dir, echo=echo)
            logs.append(log)
            log.info(f"run {run_dir.path} started; settings:")
            for name, value in settings_module.as_dict(settings).items():
                log.info(f"  {name} = {value!r}")
        try:
            results = train_stack([s for _, s in members], [r for r, _ in members], logs, started)
        except NotStackable as exc:
            why = str(exc)
            for log in logs:
                log.warning(f"stacking refused: {why}; this run starts again alone")
        except KeyboardInterrupt:
            for (run_dir, _), log in zip(members, logs):
                if run_dir.status().get("state") == "running":
                    log.error("interrupted (Ctrl-C or a stop signal); finished evaluations are kept in metrics.jsonl")
                    run_dir.set_status("interrupted", error="interrupted")
            raise
        except Exception as exc:  # the stack itself failed: every unfinished member says so
            error = f"{type(exc).__name__}: {exc}"
            for (run_dir, _), log in zip(members, logs):
                if run_dir.status().get("state") == "running":
                    log.error("run failed (the whole stack):\n" + traceback.format_exc())
                    run_dir.set_status("failed", error=error)
                    outcome[str(run_dir.path)] = "failed"
            results = {}
        else:
            for (run_dir, _), log in zip(members, logs):
                result = results[str(run_dir.path)]
                if isinstance(result, BaseException):  # marked failed when it left the stack (Stack.drop)
                    outcome[str(run_dir.path)] = "failed"
                else:
                    run_dir.set_status("done", wall_time=result["wall_time"])
                    outcome[str(run_dir.path)] = "done"
        finally:
            for log in logs:
                close_logger(log)
        if why is None:
            return outcome
    names = ', '.join(r.path.name for r, _ in members)
    print(f"stack of runs {names} trained one by one: {why}", flush=True)
    outcome.update(_one_by_one([run_dir.path for run_dir, _ in members], echo, f"{why} (stack of runs {names})"))
    return outcome


def _one_by_one(paths, echo, why):
    """Train the runs in `paths`, planned as a stack, alone, one after another (main.run_folder), `why` in each
    one's logs.log and status.json (stack_refused, which sweep.py's last report shows); {path: 'done' |
    'failed'}."""
    import main

    outcome = {}
    for path in paths:
        try:
            RunDir(path).note_status(stack_refused=why, stacked_with=None)
            main.run_folder(path, echo=echo, note=main.alone_note(why))
            outcome[str(path)] = "done"
        except main.RunFailed:
            outcome[str(path)] = "failed"
            if out_of_time(RunDir(path)):
                break  # the job's time is up: the runs not reached stay queued for a resume
    return outcome


def _resumed_step(run_dir):
    """The step a run resumes from: its checkpoint's (0 without one; None where it cannot be read, which its own
    resume then reports)."""
    path = run_dir.file(training.CHECKPOINT)
    if not path.exists():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["step"])
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------- the stack (what training.loop steps for K members)

def _check_alike(members):
    """NotStackable unless every member trains the same number of steps on sources of the same shapes."""
    first = members[0]
    for m in members[1:]:
        for what, a, b in (("training steps", first.plan.total_steps, m.plan.total_steps),
                           ("batch size", first.plan.batch_size, m.plan.batch_size),
                           ("training set size", first.plan.train_size, m.plan.train_size),
                           ("evaluation interval", first.plan.eval_interval, m.plan.eval_interval),
                           ("checkpoint interval", first.plan.checkpoint_interval, m.plan.checkpoint_interval),
                           ("resumed step", first.step, m.step),
                           ("evaluation splits", _shapes(first.data.splits), _shapes(m.data.splits)),
                           ("optimiser", type(first.optimizer), type(m.optimizer))):
            if a != b:
                raise NotStackable(f"run {m.run_dir.path.name} differs from run {first.run_dir.path.name} in its "
                                   f"{what} ({b} against {a})")
        if isinstance(first.data.train, dict) and _shapes({"t": first.data.train}) != _shapes({"t": m.data.train}):
            raise NotStackable(f"run {m.run_dir.path.name}'s training set has other shapes than run "
                               f"{first.run_dir.path.name}'s")


def _shapes(splits):
    return {name: {k: (tuple(v.shape), v.dtype) for k, v in split.items()} for name, split in splits.items()}


class TaskState:
    """The tensors a task keeps (its attributes holding tensors, at any depth of lists, tuples and dicts),
    stacked over the members, and handed to one template task inside vmap.

    The template is a shallow copy of the first member's task. Outside vmap its tensor attributes hold the
    stacked (K, ...) tensors; inside, the batched views of them, so that the task's own code (a table look-up,
    a write into a window of training accuracies) runs once for all members. Tensor attributes that the
    code creates or replaces inside vmap come back stacked. `sync(k, task)` gives member k's own task object
    its slice (and the template's other attributes that changed, such as a step counter) for what runs per
    member: diagnostics, checkpoints, the summary."""

    def __init__(self, member_tasks):
        self.template = copy.copy(member_tasks[0])
        for name, value in list(vars(self.template).items()):
            if isinstance(value, (dict, list)):  # the template's containers are its own (a cache filled in vmap)
                setattr(self.template, name, copy.copy(value))
        self.stacked = {}
        for name in vars(self.template):
            if _has_tensor(getattr(self.template, name)):
                self.stacked[name] = _stack_trees([getattr(t, name) for t in member_tasks], name)
                setattr(self.template, name, self.stacked[name])
        self.initial = dict(vars(self.template))

    def leaves(self):
        return {name: pytree.tree_flatten(value) for name, value in self.stacked.items()}

    @contextlib.contextmanager
    def bound(self, flat):
        """Within vmap: the template's tensor attributes from the batched leaves `flat`."""
        for name, (leaves, spec) in flat.items():
            setattr(self.template, name, pytree.tree_unflatten(leaves, spec))
        yield self.template

    def collect(self):
        """Within vmap, after the task's code: the template's tensor attributes (flattened) and their specs."""
        out, specs = {}, {}
        for name, value in vars(self.template).items():
            if _has_tensor(value):
                leaves, spec = pytree.tree_flatten(value)
                out[name] = [x if isinstance(x, torch.Tensor) else torch.zeros(()) for x in leaves]
                specs[name] = (spec, [None if isinstance(x, torch.Tensor) else x for x in leaves])
        return out, specs

    def store(self, stacked_leaves, specs):
        """After vmap: keep the stacked outputs as the template's tensor attributes."""
        self.stacked = {}
        for name, leaves in stacked_leaves.items():
            spec, plain = specs[name]
            leaves = [x if p is None else p for x, p in zip(leaves, plain)]
            self.stacked[name] = pytree.tree_unflatten(leaves, spec)
            setattr(self.template, name, self.stacked[name])

    def sync(self, k, task):
        for name, value in vars(self.template).items():
            if name in self.stacked:
                setattr(task, name, pytree.tree_map(lambda x: x[k] if isinstance(x, torch.Tensor) else x, value))
            elif self.initial.get(name, object()) is not value:
                setattr(task, name, copy.copy(value))

    def keep(self, index):
        # (index lives with the parameters, on the GPU; a task's tensors may stay on the CPU)
        for name, value in self.stacked.items():
            self.stacked[name] = pytree.tree_map(lambda x: x[index.to(x.device)] if isinstance(x, torch.Tensor)
                                                 else x, value)
            setattr(self.template, name, self.stacked[name])


def _has_tensor(value):
    return any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(value))


def _stack_trees(values, name):
    flat = [pytree.tree_flatten(v) for v in values]
    spec = flat[0][1]
    if any(f[1] != spec for f in flat):
        raise NotStackable(f"the task's {name} differs in structure between members")
    leaves = []
    for i, leaf in enumerate(flat[0][0]):
        if isinstance(leaf, torch.Tensor):
            column = [f[0][i] for f in flat]
            if any(c.shape != leaf.shape or c.dtype != leaf.dtype for c in column):
                raise NotStackable(f"the task's {name} has other shapes in different members")
            leaves.append(torch.stack(column))
        else:
            leaves.append(leaf)
    return pytree.tree_unflatten(leaves, spec)


class Functional:
    """The stacked model as a task sees it inside vmap: called like the module, it runs the template
    module with one member's (batched) parameters and buffers."""

    def __init__(self, module, params, buffers):
        self._module, self._state = module, (params, buffers)

    def __call__(self, *args, **kwargs):
        return torch.func.functional_call(self._module, self._state, args, kwargs)

    def __getattr__(self, name):
        return getattr(self._module, name)


class StackedSource:
    """The members' training sources served as one stacked batch. Fixed sets: the members' tensors stacked
    once, each member's permutation drawn from its own generator at its epoch's start (the solo run's), and
    one gather per step; streams: each member's sampler with its own generator, stacked."""

    def __init__(self, sources):
        self.sources = sources
        self.fixed = isinstance(sources[0], dataloaders.FixedSet)
        if self.fixed:
            self.tensors = {k: torch.stack([s.tensors[k] for s in sources]) for k in sources[0].tensors}
            self.order = None
            if sources[0].position:  # resumed inside an epoch: the members' saved orders
                self.order = torch.stack([s.order for s in sources])

    def next(self):
        first = self.sources[0]
        if not self.fixed:
            batches = [s.next() for s in self.sources]
            return {k: torch.stack([b[k] for b, _ in batches]) for k in batches[0][0]}, batches[0][1]
        if first.full_batch:
            return self.tensors, first.n
        position = first.position
        if position == 0:
            for s in self.sources:
                s.order = torch.randperm(s.n, generator=s.generator).to(next(iter(s.tensors.values())).device)
            self.order = torch.stack([s.order for s in self.sources])
        index = self.order[:, position:position + first.batch_size]
        position += index.shape[1]
        for s in self.sources:
            s.position = 0 if position >= first.n else position
        rows = torch.arange(len(self.sources), device=index.device).unsqueeze(1)
        return {k: v[rows, index] for k, v in self.tensors.items()}, index.shape[1]

    def keep(self, index, keep_sources):
        self.sources = keep_sources
        if self.fixed:
            self.tensors = {k: v[index] for k, v in self.tensors.items()}
            if self.order is not None:
                self.order = self.order[index]


class StackedOptimizer:
    """Adam, AdamW (decoupled weight decay) and SGD (momentum) over stacked parameters, each member with the
    hyper-parameters of its own optimiser's parameter groups (its schedule's current rate, its weight decay).
    The arithmetic is torch's single-tensor implementation's; a hyper-parameter that all members share is
    used as a number, exactly as there, one that differs as a (K, 1, ...) tensor."""

    def __init__(self, members, params):
        first = members[0].optimizer
        kind = type(first)
        if kind not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
            raise NotStackable(f"optimiser {kind.__name__} does not stack")
        for g in first.param_groups:
            if g.get("amsgrad") or g.get("maximize") or g.get("nesterov") or g.get("dampening", 0):
                raise NotStackable("amsgrad, maximize, nesterov and dampening do not stack")
        self.kind = "sgd" if kind is torch.optim.SGD else "adam"
        self.adamw = kind is torch.optim.AdamW
        self.first = members[0]  # betas and the kind of weight decay are every member's: the first one's say
        self.params = params
        # per member: parameter name -> index of its group in that member's optimiser
        self.group_of = []
        for m in members:
            name_of = {id(p): n for n, p in m.model.named_parameters()}
            self.group_of.append({name_of[id(p)]: gi for gi, g in enumerate(m.optimizer.param_groups)
                                  for p in g["params"]})
        self.names = [n for n in params if n in self.group_of[0]]
        self.state = {}
        for n in self.names:  # a resumed member's optimiser state, stacked
            per = [m.optimizer.state.get(dict(m.model.named_parameters())[n]) for m in members]
            if per[0]:
                if self.kind == "adam":
                    self.state[n] = {"step": int(float(per[0]["step"])),
                                     "exp_avg": torch.stack([p["exp_avg"] for p in per]),
                                     "exp_avg_sq": torch.stack([p["exp_avg_sq"] for p in per])}
                elif per[0].get("momentum_buffer") is not None:
                    self.state[n] = {"momentum_buffer": torch.stack([p["momentum_buffer"] for p in per])}

    def _value(self, members, name, key, like):
        """A group hyper-parameter of every member: a number when they agree, else a (K, 1, ...) tensor."""
        values = [m.optimizer.param_groups[go[name]][key] for m, go in zip(members, self.group_of)]
        if all(v == values[0] for v in values):
            return values[0]
        return torch.tensor(values, dtype=like.dtype if like.is_floating_point() else torch.float32,
                            device=like.device).view(-1, *[1] * (like.dim() - 1))

    @torch.no_grad()
    def step(self, members):
        together = {}  # Adam's parameters whose hyper-parameters are numbers, grouped by them: one foreach each
        for n in self.names:
            p = self.params[n]
            if p.grad is None:
                continue
            v = lambda key: self._value(members, n, key, p if not p.is_complex() else torch.view_as_real(p))  # noqa
            if self.kind != "adam":
                self._sgd(n, p, v)
                continue
            lr, wd, eps = v("lr"), v("weight_decay"), v("eps")
            if any(isinstance(x, torch.Tensor) for x in (lr, wd, eps)):
                self._adam(n, p, v)  # members that differ in them: (K, 1, ...) values, one parameter at a time
            else:  # (and by step: a parameter may have had no gradient for a while)
                step = self.state[n]["step"] if n in self.state else 0
                together.setdefault((lr, wd, eps, self.group_of[0][n], step), []).append(n)
        for (lr, wd, eps, _, _), names in together.items():
            self._adam_together(names, lr, wd, eps)

    def _adam_group(self, n):
        """(beta1, beta2, decoupled weight decay) of parameter n's group: every member's (the first one's say)."""
        group = self.first.optimizer.param_groups[self.group_of[0][n]]
        return (*group["betas"], group.get("decoupled_weight_decay", False) or self.adamw)

    def _adam(self, n, param, v):
        lr, wd, eps = v("lr"), v("weight_decay"), v("eps")
        beta1, beta2, decoupled = self._adam_group(n)
        grad = param.grad
        state = self._adam_state(n, param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        coupled = _nonzero(wd) and not decoupled
        if coupled and not isinstance(wd, torch.Tensor):  # on the parameter as it is, complex too, as torch's
            grad = grad.add(param, alpha=wd)  # Adam does (on real views the sum rounds otherwise)
        if param.is_complex():  # as real views from here: a per-member (K, 1, ..., 1) value fits their shape,
            # and a real factor on (a, b) gives exactly what it gives on a + bi (the state stays complex)
            grad, exp_avg, exp_avg_sq, param = (torch.view_as_real(t) for t in (grad, exp_avg, exp_avg_sq, param))
        if _nonzero(wd) and decoupled:
            param.mul_(1 - lr * wd)
        elif coupled and isinstance(wd, torch.Tensor):
            grad = grad + param * wd
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(eps)
        if isinstance(step_size, torch.Tensor):
            param.add_((exp_avg * -step_size) / denom)
        else:
            param.addcdiv_(exp_avg, denom, value=-step_size)

    def _adam_state(self, n, param):
        state = self.state.setdefault(n, {"step": 0, "exp_avg": torch.zeros_like(param),
                                          "exp_avg_sq": torch.zeros_like(param)})
        state["step"] += 1
        return state

    def _adam_together(self, names, lr, wd, eps):
        """_adam's arithmetic, op for op, for parameters of one group whose hyper-parameters are numbers, as
        torch._foreach ops: one call per op for all of them instead of one per parameter (a step of a model of
        many small tensors, GPT-2's, is mostly those calls)."""
        beta1, beta2, decoupled = self._adam_group(names[0])
        real = lambda t: torch.view_as_real(t) if t.is_complex() else t  # noqa: E731 (as _adam: real views)
        params, grads, exp_avgs, exp_avg_sqs = [], [], [], []
        for n in names:
            param = self.params[n]
            state = self._adam_state(n, param)
            step = state["step"]  # every one's (grouped by it)
            params.append(param)
            grads.append(param.grad)
            exp_avgs.append(real(state["exp_avg"]))
            exp_avg_sqs.append(real(state["exp_avg_sq"]))
        if wd != 0 and not decoupled:  # on the parameters as they are, as _adam
            grads = torch._foreach_add(grads, params, alpha=wd)
        params, grads = [real(t) for t in params], [real(t) for t in grads]
        if wd != 0 and decoupled:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2 ** 0.5)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)

    def _sgd(self, n, param, v):
        lr, wd, momentum = v("lr"), v("weight_decay"), v("momentum")
        complex_ = param.is_complex()  # real views, as in _adam; the momentum buffer is kept complex
        real = torch.view_as_real if complex_ else (lambda t: t)
        grad, param = real(param.grad), real(param)
        if _nonzero(wd):
            grad = grad + param * wd if isinstance(wd, torch.Tensor) else grad.add(param, alpha=wd)
        if _nonzero(momentum):
            state = self.state.get(n)
            if state is None:
                buf = torch.clone(grad).detach()
                self.state[n] = {"momentum_buffer": torch.view_as_complex(buf) if complex_ else buf}
            else:
                buf = real(state["momentum_buffer"])
                buf.mul_(momentum).add_(grad)  # dampening 0 (refused otherwise)
            grad = buf
        if isinstance(lr, torch.Tensor):
            param.add_(grad * -lr)
        else:
            param.add_(grad, alpha=-lr)

    def keep(self, index, members):
        """Only the members at `index` (a tensor of positions) go on; `members`: those members."""
        self.group_of = [self.group_of[i] for i in index.tolist()]
        self.first = members[0]
        for state in self.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value[index]

    def member_state(self, k, m):
        """Member k's slice of the state, written into its own optimiser (torch's format) for its checkpoint."""
        named = dict(m.model.named_parameters())
        for n, state in self.state.items():
            p = named[n]
            if self.kind == "adam":
                m.optimizer.state[p] = {"step": torch.tensor(float(state["step"])),
                                        "exp_avg": state["exp_avg"][k].clone(),
                                        "exp_avg_sq": state["exp_avg_sq"][k].clone()}
            else:
                m.optimizer.state[p] = {"momentum_buffer": state["momentum_buffer"][k].clone()}


def _nonzero(value):
    return bool((value != 0).any()) if isinstance(value, torch.Tensor) else value != 0


def clip_members(params, max_norms):
    """Each member's gradients scaled as torch.nn.utils.clip_grad_norm_ scales a solo run's: by
    max_norm / (norm of that member's gradients + 1e-6), at most 1; a member with max_norm 0 is not clipped."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    K = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), 2, dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, 2, dim=0)
    limit = torch.tensor(max_norms, dtype=total.dtype, device=total.device)
    coef = torch.where(limit > 0, torch.clamp(limit / (total + 1e-6), max=1.0), torch.ones_like(total))
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))


def train_stack(settings_list, run_dirs, logs, started=None):
    """Train the members together; returns {run folder: summary, or the exception that failed it}."""
    started = time.time() if started is None else started
    training.prepare_process(settings_list[0])  # threads is every member's: not a setting a stack may vary
    accelerator = training.make_accelerator(settings_list[0])
    members = [training.build_run(s, r, log, accelerator, stacked=True)
               for s, r, log in zip(settings_list, run_dirs, logs)]
    _check_alike(members)
    stack = Stack(members, accelerator, started)
    names = [m.run_dir.path.name for m in members]
    precision = reduced_precision(members[0].settings, accelerator)
    for m in members:
        m.log.info(f"stacked with runs {', '.join(names)} ({len(members)} members, one stacked model)")
        if precision:
            m.log.info(f"note: {precision} computes in 16 bits, where the stack's batched kernels (another summation "
                       "order than a solo run's) part this member from its solo run at about 1e-3 a step, and "
                       "further over the run (as a rerun on another GPU would); mixed_precision = 'no' (float32) "
                       "keeps it within about 1e-6 a step")
        m.run_dir.note_status(stacked_with=names, stack_refused=None)  # (an earlier attempt's refusal goes)
    training.loop(stack, f"{members[0].settings.task} x{len(members)}")
    for k, m in enumerate(stack.runs):
        stack.task_state.sync(k, m.task)
        stack.results[str(m.run_dir.path)] = m.finish(accelerator, started)
    return stack.results


class Stack:
    """What training.loop steps for the members of a stack (training.Solo's methods, for K runs at once): the
    members' models stacked into one (torch.func.stack_module_state), run by vmap over the template module."""

    def __init__(self, members, accelerator, started):
        self.runs, self.accelerator, self.started = members, accelerator, started
        self.results = {}  # run folder -> the exception of a member that failed (the loop goes on without it)
        self.base = copy.deepcopy(members[0].model)
        for module in self.base.modules():
            if hasattr(module, "stacked"):  # a model's vmap path (group_mlp: its ops with batching rules)
                module.stacked = True
        try:
            params, buffers = torch.func.stack_module_state([m.model for m in members])
        except Exception as exc:  # noqa: BLE001
            raise NotStackable(f"the members' parameters do not stack: {exc}")
        self.params, self.buffers = params, buffers
        self.task_state = TaskState([m.task for m in members])
        self.source = StackedSource([m.source for m in members])
        self.optimizer = StackedOptimizer(members, params)
        self.eval_splits = {name: {k: torch.stack([m.data.splits[name][k] for m in members]) for k in split}
                            for name, split in members[0].data.splits.items()}
        self.diagnose = type(members[0].task).diagnostics is not tasks.base.Task.diagnostics
        self.trainable = [n for n, p in params.items() if p.requires_grad]

    # ---- vmap of a task method with the members' parameters, buffers and task tensors
    def _vmapped(self, method, batch, convert=None):
        state = self.task_state
        flat = state.leaves()
        leaves = {name: leaves for name, (leaves, _) in flat.items()}
        specs_in = {name: spec for name, (_, spec) in flat.items()}
        side = {}

        def one(params, buffers, batch, leaves):
            with state.bound({n: (leaves[n], specs_in[n]) for n in leaves}) as task:
                out = method(task, Functional(self.base, params, buffers), batch)
                tensors, specs = state.collect()
            side["specs"] = specs
            return (convert(out) if convert else out), tensors

        out, tensors = torch.func.vmap(one)(self.params, self.buffers, batch, leaves)
        state.store(tensors, side["specs"])
        return out

    # ---- evaluation (training.evaluate, for all members at once)
    def evaluate(self):
        ms = self.runs
        self.base.eval()
        outs = [{} for _ in ms]
        batch_size = ms[0].settings.eval_batch_size
        with torch.inference_mode():
            for split, tensors in self.eval_splits.items():
                sums, counts = {}, {}
                n = next(iter(tensors.values())).shape[1]
                starts = [0] if batch_size <= 0 or batch_size >= n else range(0, n, batch_size)
                for start in starts:
                    batch = tensors if len(starts) == 1 else \
                        {k: v[:, start:start + batch_size] for k, v in tensors.items()}
                    with self.accelerator.autocast():
                        result = self._vmapped(lambda task, model, b: task.evaluate_batch(model, b), batch,
                                               convert=_as_tensors)
                    for key, (value, count) in result.items():
                        sums[key] = sums.get(key, 0.0) + value
                        counts[key] = counts.get(key, 0) + count
                for key, value in sums.items():
                    values, numbers = value.tolist(), counts[key].tolist()
                    for k, out in enumerate(outs):
                        out[f"{split}_{key}"] = float(values[k]) / float(numbers[k]) if float(numbers[k]) \
                            else float("nan")
            for k, m in enumerate(ms):
                self.task_state.sync(k, m.task)
                if self.diagnose:
                    self._unstack_model(k, m)
                    m.model.eval()
                    with self.accelerator.autocast():
                        outs[k].update(m.task.diagnostics(m.model, m.data))
                    m.model.train()
        self.base.train()
        return outs

    def _unstack_model(self, k, m):
        with torch.no_grad():
            for name, p in m.model.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in m.model.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name][k])

    def record_eval(self):
        t = time.time()
        outs = self.evaluate()
        spent = round(time.time() - t, 4)
        return [m.record(out, self.started, spent) for m, out in zip(self.runs, outs)]

    def checkpoint(self):
        for k, m in enumerate(self.runs):
            self.task_state.sync(k, m.task)
            self._unstack_model(k, m)
            self.optimizer.member_state(k, m)
            m.save_checkpoint(self.accelerator)

    # ---- one step of every member (the loop, training.loop, counts and evaluates)
    def step(self):
        """One forward, backward and optimiser step of the stack; returns (examples in a member's batch,
        {position: failure} of the members whose loss turned non-finite: their losses count as 0 in this step,
        and training.loop drops them after it)."""
        batch, size = self.source.next()
        with self.accelerator.autocast():
            losses = self._vmapped(lambda task, model, b: task.training_loss(model, b), batch)
        failed = {}
        for k, value in enumerate(losses.tolist()):  # (the one wait for the device a step has)
            if math.isfinite(value):
                self.runs[k].step_losses.add(value)
            else:
                failed[k] = self.runs[k].failed = training.non_finite(self.runs[k], value)
        if failed:
            losses = torch.where(torch.isfinite(losses), losses, torch.zeros_like(losses))
        losses.sum().backward()
        max_norms = [m.settings.max_grad_norm for m in self.runs]
        if any(max_norms):
            clip_members([self.params[n] for n in self.trainable], max_norms)
        self.optimizer.step(self.runs)
        for m in self.runs:
            m.scheduler.step()
        for n in self.trainable:
            self.params[n].grad = None
        return size, failed

    # ---- members that fail
    def drop(self, failed):
        """The members at the positions `failed` leave the stack (their metrics kept, their failure in
        results); the others go on."""
        keep = [k for k in range(len(self.runs)) if k not in failed]
        for k in failed:
            m = self.runs[k]
            m.metrics.flush()
            self.results[str(m.run_dir.path)] = m.failed
            # failed now, as its solo run would be, not when the stack ends (a stop before then would have
            # marked it interrupted, its error lost)
            m.log.error("run failed:\n" + "".join(traceback.format_exception(m.failed)))
            m.run_dir.set_status("failed", error=f"{type(m.failed).__name__}: {m.failed}")
        index = torch.tensor(keep, device=self.params[next(iter(self.params))].device)
        self.params = {n: p.detach()[index].requires_grad_(p.requires_grad) for n, p in self.params.items()}
        self.buffers = {n: b[index] for n, b in self.buffers.items()}
        self.runs = [self.runs[k] for k in keep]
        if not self.runs:
            return
        self.optimizer.params = self.params
        self.optimizer.keep(index, self.runs)
        self.task_state.keep(index)
        self.eval_splits = {s: {k: v[index] for k, v in t.items()} for s, t in self.eval_splits.items()}
        self.source.keep(index, [m.source for m in self.runs])


def _as_tensors(out):
    """evaluate_batch's {metric: (sum, count)} with every number a tensor (vmap returns tensors only);
    Python numbers as float64, so that nothing is rounded that the solo loop keeps exact."""
    def tensor(x):
        if isinstance(x, torch.Tensor):
            return x
        return torch.tensor(float(x), dtype=torch.float64)
    return {key: (tensor(value), tensor(count)) for key, (value, count) in out.items()}
