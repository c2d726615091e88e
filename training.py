"""The one training loop. It knows no programme by name: the task supplies data, model, loss, metrics.

The loop counts optimiser steps. Their number comes from the budget the settings give, in the unit the
programme's papers use: epochs over a fixed set (`n_epochs`), steps (`n_steps`) or samples drawn
(`n_samples`). Evaluations run before the first step, at the interval the settings give (in epochs, steps
or samples) and after the last step, in large batches under inference_mode; each one is a line in
logs.log and a JSON object in metrics.jsonl carrying step, samples seen and, for a fixed set, epoch.
Accelerate places the run (CPU here, GPU with bf16 autocast where there is one). With a checkpoint
interval the run saves a resumable checkpoint (model, optimiser, schedule, the training source's
position and generator, RNG states, the task's own training state, the metrics so far); a resumed run
writes the same metrics.jsonl as one that was never stopped.

`loop` is that one loop for every way a run trains: `train` builds one run (`build_run`) and hands it to
the loop as a `Solo`; a stack of replicates (stacking.py) builds each member with `build_run` and hands the
loop a `stacking.Stack`, whose step trains all members at once.
"""
import contextlib
import dataclasses
import math
import os
import pickle
import signal
import sys
import threading
import time

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

import dataloaders
import models
import tasks
from settings import SettingsError
from results import MetricsWriter, ResultsError, atomic_replace

CHECKPOINT = "checkpoint.pt"
TIMINGS = ("elapsed", "eval_time")  # the record's wall-clock fields; everything else is reproducible


def keep_freed_memory():
    """Let this process reuse the memory it frees instead of handing it back to the system after each step.

    glibc serves blocks above its mmap threshold (128 KiB at first) with fresh pages and unmaps them when
    freed, so every step of a model whose activations are a few hundred KiB page-faults its tensors in
    again: measured on 2 cores, a fwd+bwd of x^2 on (8, 270, 512) floats took 17 ms this way and 5 ms with the
    thresholds below (a stacked model's larger tensors suffer most). The numbers computed are unchanged.
    Once per process; a no-op where there is no glibc."""
    global _MEMORY_KEPT
    if _MEMORY_KEPT:
        return
    _MEMORY_KEPT = True
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    mallopt(M_MMAP_THRESHOLD, 32 * 2 ** 20)  # glibc's largest: blocks up to 32 MiB come from the heap
    mallopt(M_TRIM_THRESHOLD, 512 * 2 ** 20)  # keep up to 512 MiB of freed heap for the next step
    mallopt(M_TOP_PAD, 64 * 2 ** 20)


_MEMORY_KEPT = False


def autocast_precision(settings):
    """(on_cpu, the autocast precision Accelerate gets: 'no', 'bf16' or 'fp16') of a run on this machine;
    SettingsError for fp16 on a CPU, where Accelerate has no fp16 autocast (the run would train in float32
    and say fp16)."""
    on_cpu = settings.device == "cpu" or not torch.cuda.is_available()
    precision = settings.mixed_precision
    if precision == "auto":
        precision = settings.gpu_autocast() if not on_cpu and torch.cuda.is_bf16_supported() else "no"
    if precision == "fp16" and on_cpu:
        raise SettingsError("mixed_precision = 'fp16' does not exist on a CPU (Accelerate would train in float32 "
                            "under that name); use 'bf16' or 'no' here, or run on a GPU")
    return on_cpu, precision


def make_accelerator(settings):
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' was asked for but no CUDA device is visible; use device = 'auto'")
    on_cpu, precision = autocast_precision(settings)
    # Accelerate keeps one state per process and refuses another precision or device in it: a worker's next
    # run (a sweep varying mixed_precision or device) sets its own
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=on_cpu, mixed_precision=precision)


class MemoryRefused(SettingsError):
    """A run whose unavoidable allocations exceed the memory free where it would train."""


def free_memory(on_gpu):
    """Bytes free for a new run: the GPU's free memory, or the system's available memory capped by this
    process's cgroup limit (SLURM's --mem) where there is one; None where the system does not say."""
    if on_gpu:
        # what the caching allocator holds but no tensor uses (a worker's earlier run's blocks) is free to it
        return torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # cgroup v2: the limit and usage of this process's group
        group = open("/proc/self/cgroup").read().strip().split("::")[-1]
        base = f"/sys/fs/cgroup{group}"
        limit = open(f"{base}/memory.max").read().strip()
        if limit != "max":
            room = int(limit) - int(open(f"{base}/memory.current").read())
            free = room if free is None else min(free, room)
    except (OSError, ValueError, IndexError):
        pass
    return free


def _gib(count):
    return f"{count / 2 ** 30:.1f} GiB" if count >= 2 ** 30 else f"{count / 2 ** 20:.0f} MiB"


def parameter_memory(settings) -> dict:
    """{what: bytes} of the model's parameters, their gradients and the optimiser's state (Adam's two moments,
    SGD's momentum): counted on a model built on torch's meta device, which allocates nothing. Empty where
    the model is a checkpoint's (pretrained_path) or does not build there."""
    spec = settings.model_spec() if hasattr(settings, "model_spec") else None
    if spec is None or getattr(spec, "pretrained_path", None):
        return {}
    try:
        with torch.device("meta"):
            model = models.build(spec)
    except Exception:  # noqa: BLE001 (a model that reads data while it builds: not counted)
        return {}
    params = list({id(p): p for p in model.parameters()}.values())  # shared tensors once
    count = sum(p.numel() for p in params)
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    states = {"adam": 2, "adamw": 2, "sgd": 1 if settings.sgd_momentum else 0, "muon": 1}.get(settings.optim, 0)
    state = f" and {settings.optim}'s state" if states else ""
    return {f"{count:,} parameters with their gradients{state} (the model's sizes)":
            sum(p.numel() * p.element_size() for p in params) + trainable * (1 + states)}


def check_memory(settings, copies=1):
    """Refuse (MemoryRefused, naming what needs the memory) a run whose unavoidable allocations, the task's
    memory_estimate, exceed the memory free where it would train: refused at once instead of growing
    until the system kills it with its status left 'running'. copies: members of a stack (K models, K
    batches at once)."""
    parts = dict(tasks.get(settings.task).memory_estimate(settings), **parameter_memory(settings))
    parts = {what: size * copies for what, size in parts.items()}
    need = sum(parts.values())
    on_gpu = settings.device != "cpu" and torch.cuda.is_available()
    free = free_memory(on_gpu) if need else None
    if free is None or need <= free:
        return
    where = "the GPU has" if on_gpu else "this machine has"
    who = "this run needs" if copies == 1 else f"these {copies} stacked runs need"
    raise MemoryRefused(f"{who} at least {_gib(need)} at once ("
                        + "; ".join(f"{what}: {_gib(size)}" for what, size in sorted(parts.items(), key=lambda kv: -kv[1]))
                        + f") and {where} {_gib(free)} free: lower the sizes named (batch sizes, lengths, widths), "
                        "or run it where there is more memory")


# ---------------------------------------------------------------- budget and intervals

@dataclasses.dataclass
class Plan:
    """The run's length in steps and when to evaluate and checkpoint, resolved from the settings."""
    total_steps: int
    batch_size: int
    train_size: int | None  # examples of a fixed set; None for a stream
    eval_interval: tuple | None  # (unit, every) with unit 'steps' or 'samples'; None: first and last only
    checkpoint_interval: tuple | None

    def epoch(self, samples):
        """Epochs done after `samples` examples of a fixed set (an int at an epoch's end); None for a stream."""
        if self.train_size is None:
            return None
        epochs = samples / self.train_size
        return int(epochs) if epochs.is_integer() else round(epochs, 4)


def _interval(settings, name, steps_per_epoch):
    """An interval setting group (eval_every, checkpoint_every) as (unit, every) in steps or samples."""
    if getattr(settings, f"{name}_steps"):
        return "steps", getattr(settings, f"{name}_steps")
    if getattr(settings, f"{name}_samples"):
        return "samples", getattr(settings, f"{name}_samples")
    if getattr(settings, name):
        return "steps", getattr(settings, name) * steps_per_epoch  # validation refuses epochs on a stream
    return None


def plan(settings, source):
    """Steps and intervals of a run on `source` (validation has refused budgets a source cannot count)."""
    per_epoch = source.steps_per_epoch
    if settings.n_steps:
        total = settings.n_steps
    elif settings.n_samples and isinstance(source, dataloaders.FixedSet):
        # whole epochs, each ending with its partial batch, then the batches of the rest: n_samples = 10^7 on
        # 10^4 inputs in batches of 512 is 1000 epochs of 20 steps (ceil(10^7 / 512) steps stopped 2.3% short)
        epochs, rest = divmod(settings.n_samples, source.n)
        total = epochs * per_epoch + math.ceil(rest / source.batch_size)
    elif settings.n_samples:
        total = math.ceil(settings.n_samples / source.batch_size)
    else:
        total = settings.n_epochs * per_epoch
    train_size = source.n if isinstance(source, dataloaders.FixedSet) else None
    return Plan(total, source.batch_size, train_size, _interval(settings, "eval_every", per_epoch),
                _interval(settings, "checkpoint_every", per_epoch))


def due(interval, step, samples_before, samples):
    """Whether an interval (unit, every) falls within the step that took the samples seen from
    samples_before to samples."""
    if interval is None:
        return False
    unit, every = interval
    if unit == "steps":
        return step % every == 0
    return samples // every > samples_before // every


# ---------------------------------------------------------------- evaluation

def evaluate(task, model, data, batch_size, accelerator):
    """`<split>_<metric>` = sum / count over each split, from the task's per-batch sums and counts."""
    model.eval()
    out = {}
    with torch.inference_mode():
        for split, tensors in data.splits.items():
            sums, counts = {}, {}
            for batch in dataloaders.batches(tensors, batch_size):
                with accelerator.autocast():
                    for key, (value, count) in task.evaluate_batch(model, batch).items():
                        sums[key] = sums.get(key, 0.0) + value
                        counts[key] = counts.get(key, 0) + count
            for key, value in sums.items():
                out[f"{split}_{key}"] = float(value) / float(counts[key]) if float(counts[key]) else float("nan")
        with accelerator.autocast():
            out.update(task.diagnostics(model, data))
    model.train()
    return out


def _show_progress(settings):
    if settings.progress != "auto":
        return settings.progress == "on"
    return sys.stderr.isatty() and not os.environ.get("SUBMITIT_EXECUTOR")


def _format_eval(record):
    where = " ".join(f"{k} {record[k]}" for k in ("epoch", "step", "samples") if k in record)
    parts = [f"eval {where}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items()
              if k not in ("epoch", "step", "samples", "lr") + TIMINGS and isinstance(v, float)]
    parts += [f"lr {record['lr']:.3g}", f"{record['elapsed']:.1f}s"]
    return " | ".join(parts)


def first_reached(history, unit, threshold=1.0):
    """The first `unit` (epoch, step, samples) at which each accuracy reached the threshold."""
    out = {}
    for record in history:
        for key, value in record.items():
            name = f"first_{unit}_{key}_1" if threshold == 1.0 else f"first_{unit}_{key}_{threshold:g}"
            if key.endswith("_accuracy") and value >= threshold and name not in out:
                out[name] = record[unit]
    return out


def first_epochs(history, threshold=1.0):
    """First epoch at which each accuracy reached the threshold (grokking delay = their difference)."""
    return first_reached(history, "epoch", threshold)


def _best(history, unit):
    out = {}
    for key in history[-1]:
        if key.endswith("_accuracy"):
            best = max(history, key=lambda r: r[key])
            out[f"best_{key}"] = best[key]
            out[f"best_{key}_{unit}"] = best[unit]
    return out


# ---------------------------------------------------------------- the loop

def prepare_process(settings):
    """What a run sets in its process before any tensor work: its torch threads (the count decides the last
    bits of every sum) and glibc's memory reuse (keep_freed_memory)."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    keep_freed_memory()


def eval_record(run_plan, step, samples, values, lr, started, eval_time):
    """One metrics.jsonl record: where the run is (epoch where a fixed set defines one, step, samples), the
    evaluation's values, the learning rate and the timings."""
    record = {"epoch": run_plan.epoch(samples), "step": step, "samples": samples}
    if record["epoch"] is None:
        del record["epoch"]
    record.update(values)
    record.update(lr=lr, elapsed=round(time.time() - started, 3), eval_time=eval_time)
    return record


def finish(run_dir, log, summary, checkpoint_path):
    """Write a finished run's summary.json, remove its checkpoint (the metrics and summary say everything)
    and log the summary line."""
    run_dir.write_summary(summary)
    if checkpoint_path.exists():
        checkpoint_path.unlink()
    log.info("summary: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in summary["final"].items()) + f", wall time {summary['wall_time']:.1f}s")


def log_data(log, data, data_time):
    """The data lines of logs.log: the training set's size, the evaluation splits, the task's facts."""
    train_size = "a fresh batch every step" if data.train_size is None else f"{data.train_size} training examples"
    log.info(f"data: {train_size}; evaluation splits: "
             + ", ".join(f"{name} {data.size(name)}" for name in data.splits) + f" (made in {data_time:.2f}s)")
    for key, value in data.facts.items():
        log.info(f"data fact {key}: {value}")


def log_run_shape(log, accelerator, source, run_plan):
    """The logs.log line on where and how the run trains: device, precision, batches, steps, threads."""
    per_epoch = f"{source.steps_per_epoch} steps per epoch of " if source.steps_per_epoch else "fresh batches of "
    log.info(f"device {accelerator.device}, mixed precision {accelerator.mixed_precision}, "
             f"{per_epoch}batch {source.batch_size}, {run_plan.total_steps} steps, "
             f"{torch.get_num_threads()} torch thread{'s' * (torch.get_num_threads() > 1)}")


# what torch.load says of a file cut short (its zip reader)
DAMAGED_ARCHIVE = ("PytorchStreamReader", "zip archive", "central directory", "file read failed")


def resume(checkpoint_path, run_plan, device, log, model, optimizer, scheduler, source, task, step_losses,
           rng=True):
    """(step, samples, train_time, history) of the run's checkpoint, loaded into model, optimizer, scheduler,
    source, task and step_losses (and torch's random states with rng), or a fresh start's where there is
    none."""
    if not (run_plan.checkpoint_interval and checkpoint_path.exists()):
        return 0, 0, 0.0, []
    try:
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
    except (EOFError, pickle.UnpicklingError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not any(word in str(exc) for word in DAMAGED_ARCHIVE):
            raise  # out of memory, a device: the file may be fine, so no advice to delete it
        raise ResultsError(f"{checkpoint_path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]}): "
                           "it is damaged, a write cut short? Delete it to train the run again from its start "
                           "(its folder and settings stay)") from exc
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    source.load_state_dict(state["source"])
    task.load_state_dict(state["task"])
    if "step_losses" in state:  # (a checkpoint written before they were kept: the next record averages fewer)
        step_losses.load_state_dict(state["step_losses"])
    if rng:
        _set_rng_states(state["rng"], device)
    log.info(f"resumed from checkpoint at step {state['step']}, {state['samples']} samples")
    return state["step"], state["samples"], state["train_time"], state["history"]


class StepLosses:
    """The mean training loss of the optimiser steps since the previous evaluation, in train mode (dropout on;
    what Hugging Face's Trainer logs as 'loss'): each record after the first has it as `step_loss`, beside
    the evaluations' `<split>_loss` (eval mode, after the step). Kept in checkpoints, so a resumed run's
    records are an uninterrupted one's."""

    def __init__(self):
        self.total, self.steps = 0.0, 0

    def add(self, value):
        self.total += value
        self.steps += 1

    def take(self):
        """{'step_loss': the mean since the last take} ({} before any step), and a fresh start."""
        if not self.steps:
            return {}
        mean, self.total, self.steps = self.total / self.steps, 0.0, 0
        return {"step_loss": mean}

    def state_dict(self):
        return {"total": self.total, "steps": self.steps}

    def load_state_dict(self, state):
        self.total, self.steps = state["total"], state["steps"]


class Run:
    """One run as the loop holds it: its settings, folder and log; what build_run made for it (task, notes,
    data, model, optimiser, schedule, training source, plan, checkpoint path); where it stands (step,
    samples, train_time) and its metrics. `failed`: the exception that ended it, for a member of a stack."""

    def __init__(self, settings, run_dir, log):
        self.settings, self.run_dir, self.log = settings, run_dir, log
        self.failed = None
        self.earlier = 0.0  # seconds earlier attempts took up to the checkpoint this one resumes
        self.step_losses = StepLosses()

    def record(self, values, started, eval_time):
        """Append one evaluation's record to metrics.jsonl and its line to logs.log; returns the record."""
        record = eval_record(self.plan, self.step, self.samples, {**values, **self.step_losses.take()},
                             self.scheduler.get_last_lr()[0], started - self.earlier, eval_time)
        with signals_held():  # a stop between the two would keep a record that logs.log lacks
            self.metrics.append(record)
            self.log.info(_format_eval(record))
        return record

    def save_checkpoint(self, accelerator):
        self.metrics.flush()
        _save_checkpoint(self.checkpoint, accelerator, self.model, self.optimizer, self.scheduler, self.source,
                         self.task, self.step, self.samples, self.train_time, self.metrics.records,
                         self.step_losses)

    def finish(self, accelerator, started):
        """summary.json (and the summary line) of the finished run, its checkpoint removed; returns the summary."""
        summary = summarise(self.settings, self.task, self.data, self.plan, self.metrics.records, self.step,
                            self.samples, (self.total, self.trainable), accelerator, self.data_time,
                            self.train_time, started - self.earlier, self.notes)
        finish(self.run_dir, self.log, summary, self.checkpoint)
        return summary


@contextlib.contextmanager
def signals_held():
    """Ctrl-C and kill (SIGINT, SIGTERM) wait until the block is done, then act as they would have: what it
    writes is all or nothing. Their handlers are swapped for ones that only note them (a signal mask would not
    do: the kernel hands a process's signal to any thread that does not mask it). The main thread only, where
    handlers run; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # (a handler set outside Python, None here, could not be put back: that signal is left alone)
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)
              if signal.getsignal(signum) is not None}
    pending = []
    for signum in before:
        signal.signal(signum, lambda got, frame: pending.append(got))
    try:
        yield
    finally:
        arrived = None  # a signal acted on by a handler already put back while the next one is put back
        for signum, handler in before.items():
            while True:
                try:
                    signal.signal(signum, handler)
                    break
                except BaseException as exc:  # noqa: BLE001 (raised after every handler is back)
                    arrived = arrived or exc
        for signum in pending:
            handler = before[signum]
            if callable(handler):
                handler(signum, None)
            elif handler != signal.SIG_IGN:  # the default action: the process ends by this signal
                os.kill(os.getpid(), signum)
        if arrived is not None:
            raise arrived


def build_run(settings, run_dir, log, accelerator, stacked=False):
    """Everything a run needs before its first step, from its seed: task, data, model, training source, plan,
    optimiser and schedule, and its checkpoint's state where it resumes. stacked: a member of a stack
    (stacking.py), whose optimiser the stack's replaces (never stepped, never wrapped by Accelerate) and whose
    resume leaves torch's random states alone (the members share one process's generator)."""
    run = Run(settings, run_dir, log)
    set_seed(settings.seed)
    run.task = tasks.get(settings.task)(settings, log)
    run.notes = settings.notes()
    for note in run.notes:
        log.warning(f"note: {note}")

    t0 = time.time()
    run.data = dataloaders.build_data(run.task, accelerator.device)
    run.data_time = time.time() - t0
    log_data(log, run.data, run.data_time)

    set_seed(settings.seed)  # model init independent of how much randomness data generation drew
    model = run.task.build_model(run.data)
    if stacked:
        model = model.to(accelerator.device)
    run.total, run.trainable = models.count_parameters(model)
    log.info(f"model: {type(model).__name__}, {run.total:,} parameters ({run.trainable:,} trainable)")

    budget = None if settings.n_steps else settings.n_samples  # (plan's precedence: n_steps, n_samples, n_epochs)
    run.source = dataloaders.make_source(run.data.train, settings.batch_size, settings.seed, accelerator.device,
                                         budget)
    if settings.batch_size > run.source.batch_size:  # a fixed set smaller than the batch asked for
        run.notes.append(f"batch_size = {settings.batch_size} is more than the {run.source.n} training examples: "
                         f"every step takes all {run.source.n} (full batch)")
        log.warning(f"note: {run.notes[-1]}")
    run.plan = plan(settings, run.source)
    optimizer, run.scheduler = run.task.configure_optimizer(model, run.plan.total_steps, run.source.steps_per_epoch)
    if stacked:
        optimizer._opt_called = True  # its schedule is stepped, the optimiser never is: the stack's one steps
        run.stepper = None
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
        # Accelerate's optimizer wrapper costs ~0.3 ms a step (import look-ups, signature inspection), which
        # is most of a tiny model's step; it only matters for fp16 loss scaling and gradient accumulation.
        run.stepper = optimizer.optimizer if accelerator.scaler is None and \
            accelerator.gradient_accumulation_steps == 1 else optimizer
    run.model, run.optimizer = model, optimizer
    log_run_shape(log, accelerator, run.source, run.plan)

    run.checkpoint = run_dir.file(CHECKPOINT)
    run.step, run.samples, run.train_time, history = resume(
        run.checkpoint, run.plan, accelerator.device, log, accelerator.unwrap_model(model), optimizer,
        run.scheduler, run.source, run.task, run.step_losses, rng=not stacked)
    run.metrics = MetricsWriter(run_dir, history)
    # the time earlier attempts took up to the checkpoint: a resumed run's elapsed and wall_time go on from it
    run.earlier = float(history[-1].get("elapsed", 0.0)) if history else 0.0
    return run


class Solo:
    """What the loop steps for one run: its batch, loss, backward, clipping, optimiser and schedule steps,
    its evaluations and checkpoints. (stacking.Stack steps the members of a stack with the same methods.)"""

    def __init__(self, run, accelerator, started):
        self.runs, self.accelerator, self.started = [run], accelerator, started

    def step(self):
        """One optimiser step; returns (examples in its batch, {position in runs: failure}). A solo run's
        non-finite loss fails it here, before the step."""
        run, accelerator = self.runs[0], self.accelerator
        batch, size = run.source.next()
        loss = run.task.training_loss(run.model, batch)
        value = loss.item()  # (the one wait for the device a step has)
        if not math.isfinite(value):
            raise non_finite(run, value)
        run.step_losses.add(value)
        accelerator.backward(loss)
        if run.settings.max_grad_norm > 0:
            accelerator.clip_grad_norm_(run.model.parameters(), run.settings.max_grad_norm)
        run.stepper.step()
        run.scheduler.step()
        run.stepper.zero_grad(set_to_none=True)
        return size, {}

    def record_eval(self):
        run = self.runs[0]
        t = time.time()
        values = evaluate(run.task, run.model, run.data, run.settings.eval_batch_size, self.accelerator)
        return [run.record(values, self.started, round(time.time() - t, 4))]

    def checkpoint(self):
        self.runs[0].save_checkpoint(self.accelerator)


def non_finite(run, loss):
    """The failure of a run whose training loss turned non-finite in the step it is taking."""
    return FloatingPointError(f"training loss became {loss} at step {run.step + 1} ({run.samples} samples seen); "
                              "try a smaller lr")


def loop(trainer, desc):
    """The one training loop, over the runs `trainer` holds: one (Solo) or the members of a stack
    (stacking.Stack), which share one plan. It counts steps and samples, evaluates before the first step, at
    the plan's interval and after the last, checkpoints at the plan's interval, accounts training time
    (evaluations and checkpoints excluded) and shows progress. A member whose step failed (trainer.step
    names it) is dropped by trainer.drop; the others go on."""
    first = trainer.runs[0]
    run_plan, step, samples = first.plan, first.step, first.samples
    if step == 0:
        trainer.record_eval()
    bar = tqdm(total=run_plan.total_steps, initial=step, disable=not any(_show_progress(r.settings)
                                                                        for r in trainer.runs),
               desc=desc, unit="step", dynamic_ncols=True)
    for run in trainer.runs:
        run.model.train()
    try:
        t = time.time()
        while step < run_plan.total_steps and trainer.runs:
            size, failed = trainer.step()
            step += 1
            samples, before = samples + size, samples
            for run in trainer.runs:
                run.step, run.samples = step, samples
            bar.update(1)
            if failed:
                trainer.drop(failed)
                if not trainer.runs:
                    break
            last = step == run_plan.total_steps
            if last or due(run_plan.eval_interval, step, before, samples):
                _add_train_time(trainer, t)
                bar.set_postfix(_progress_postfix(trainer.record_eval()))
                t = time.time()
            if not last and due(run_plan.checkpoint_interval, step, before, samples):
                _add_train_time(trainer, t)
                trainer.checkpoint()
                t = time.time()
    finally:
        bar.close()
        for run in trainer.runs:
            run.metrics.flush()


def _add_train_time(trainer, since):
    """The training time since `since` (before an evaluation or a checkpoint), to each run's account."""
    spent = time.time() - since
    for run in trainer.runs:
        run.train_time += spent


def _progress_postfix(records):
    """The progress bar's losses and accuracies: one run's values, or a stack's lowest-highest over members."""
    out = {}
    for key in records[0]:
        if key.endswith(("_accuracy", "_loss")):
            values = [r[key] for r in records]
            low, high = min(values), max(values)
            out[key] = f"{low:.3f}" if low == high else f"{low:.3f}-{high:.3f}"
    return out


def train(settings, run_dir, log, started=None):
    """Train one run into run_dir and return its summary (also written to summary.json)."""
    started = time.time() if started is None else started
    prepare_process(settings)
    accelerator = make_accelerator(settings)
    run = build_run(settings, run_dir, log, accelerator)
    loop(Solo(run, accelerator, started), settings.task)
    return run.finish(accelerator, started)


def summarise(settings, task, data, run_plan, history, step, samples, parameters, accelerator, data_time,
              train_time, started, notes):
    """summary.json of a finished run (the stacked trainer, stacking.py, writes its members' with it too)."""
    total, trainable = parameters
    unit = task.counted_in or ("epoch" if run_plan.train_size is not None else "step")
    summary = {
        "state": "done",
        "task": settings.task,
        "epochs": run_plan.epoch(samples),
        "steps": step,
        "samples": samples,
        "counted_in": unit,
        "final": {k: v for k, v in history[-1].items() if k != "eval_time"},
        **_best(history, unit),
        **first_reached(history, unit),
        "parameters": {"total": total, "trainable": trainable},
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "threads": torch.get_num_threads(),
        "data_time": round(data_time, 3),
        "train_time": round(train_time, 3),
        "eval_time": round(sum(r.get("eval_time", 0.0) for r in history), 3),
        "wall_time": round(time.time() - started, 3),
        "data_facts": data.facts,
        "notes": notes,
    }
    if summary["epochs"] is None:
        del summary["epochs"]
    summary.update(task.extra_summary(data, history))
    if task.report_columns:
        summary["report_columns"] = list(task.report_columns)
    return summary


def _rng_states(device):
    """torch's random states: the CPU's, and the run's GPU's where it trains on one (not every visible GPU's:
    a run resumed where fewer are visible, or a CPU run on a GPU machine, has no others to touch)."""
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states, device):
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and device.type == "cuda" and torch.cuda.is_available():
        saved = states["cuda"]
        if isinstance(saved, (list, tuple)):  # a checkpoint that kept every visible GPU's: the run's own
            saved = saved[device.index or 0] if (device.index or 0) < len(saved) else None
        if saved is not None:
            torch.cuda.set_rng_state(saved.cpu(), device)


def _save_checkpoint(path, accelerator, model, optimizer, scheduler, source, task, step, samples, train_time,
                     history, step_losses):
    state = {"model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "source": source.state_dict(), "task": task.state_dict(),
             "rng": _rng_states(accelerator.device), "step": step, "samples": samples, "train_time": train_time,
             "history": list(history), "step_losses": step_losses.state_dict()}
    atomic_replace(path, lambda tmp: torch.save(state, tmp))
