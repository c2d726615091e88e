"""The one training loop. It knows no programme by name: the task supplies data, model, loss, metrics.

Accelerate places the run (CPU here, GPU with bf16 autocast where there is one). Evaluations run every
`eval_every` epochs and always after the last epoch, in large batches under inference_mode; each one is
a line in logs.log and a JSON object in metrics.jsonl. With `checkpoint_every`, the run saves a
resumable checkpoint so that a preempted or interrupted job continues where it stopped.
"""
import os
import sys
import time

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

import dataloaders
import tasks
from results import MetricsWriter, atomic_replace

CHECKPOINT = "checkpoint.pt"


def make_accelerator(settings):
    cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not cuda:
        raise RuntimeError("device = 'cuda' was asked for but no CUDA device is visible; use device = 'auto'")
    on_cpu = settings.device == "cpu" or not cuda
    precision = settings.mixed_precision
    if precision == "auto":
        precision = "bf16" if not on_cpu and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(cpu=on_cpu, mixed_precision=precision)


def count_parameters(model):
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def evaluate(task, model, data, batch_size, accelerator):
    """`<split>_<metric>` averaged over each split, from the task's per-batch sums."""
    model.eval()
    out = {}
    with torch.inference_mode():
        for split, tensors in data.splits.items():
            sums = {}
            for batch in dataloaders.Batches(tensors, batch_size):
                with accelerator.autocast():
                    for key, value in task.evaluate_batch(model, batch).items():
                        sums[key] = sums.get(key, 0.0) + value
            n = data.size(split)
            for key, value in sums.items():
                out[f"{split}_{'accuracy' if key == 'correct' else key}"] = float(value) / n
    model.train()
    return out


def _show_progress(settings):
    if settings.progress != "auto":
        return settings.progress == "on"
    return sys.stderr.isatty() and not os.environ.get("SUBMITIT_EXECUTOR")


def _format_eval(record):
    parts = [f"eval epoch {record['epoch']} step {record['step']}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items()
              if k not in ("epoch", "step", "samples", "lr", "elapsed") and isinstance(v, float)]
    parts += [f"lr {record['lr']:.3g}", f"{record['elapsed']:.1f}s"]
    return " | ".join(parts)


def first_epochs(history, threshold=1.0):
    """First epoch at which each accuracy reached the threshold (grokking delay = their difference)."""
    out = {}
    for record in history:
        for key, value in record.items():
            if key.endswith("_accuracy") and value >= threshold and f"first_epoch_{key}_1" not in out:
                out[f"first_epoch_{key}_1"] = record["epoch"]
    return out


def _best(history):
    out = {}
    for key in history[-1]:
        if key.endswith("_accuracy"):
            best = max(history, key=lambda r: r[key])
            out[f"best_{key}"] = best[key]
            out[f"best_{key}_epoch"] = best["epoch"]
    return out


def train(settings, run_dir, log, started=None):
    """Train one run into run_dir and return its summary (also written to summary.json)."""
    started = time.time() if started is None else started
    accelerator = make_accelerator(settings)
    set_seed(settings.seed)
    task = tasks.get(settings.task)(settings, log)

    t0 = time.time()
    data = dataloaders.build_data(task, accelerator.device)
    data_time = time.time() - t0
    log.info("data: " + ", ".join(f"{name} {data.size(name)}" for name in data.splits)
             + f" examples (made in {data_time:.2f}s)")
    for key, value in data.facts.items():
        log.info(f"data fact {key}: {value}")

    set_seed(settings.seed)  # model init independent of how much randomness data generation drew
    model = task.build_model(data)
    total, trainable = count_parameters(model)
    log.info(f"model: {type(model).__name__}, {total:,} parameters ({trainable:,} trainable)")

    batch_order = torch.Generator().manual_seed(settings.seed)
    batches = dataloaders.Batches(data.train, settings.batch_size, shuffle=True, generator=batch_order)
    total_steps = settings.n_epochs * len(batches)
    optimizer, scheduler = task.configure_optimizer(model, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Accelerate's optimizer wrapper costs ~0.3 ms a step (import look-ups, signature inspection), which
    # is most of a tiny model's step; it only matters for fp16 loss scaling and gradient accumulation.
    stepper = optimizer.optimizer if accelerator.scaler is None and accelerator.gradient_accumulation_steps == 1 \
        else optimizer
    log.info(f"device {accelerator.device}, mixed precision {accelerator.mixed_precision}, "
             f"{len(batches)} steps per epoch of batch {batches.batch_size}, {total_steps} steps")

    start_epoch, step, train_time, history = 0, 0, 0.0, []
    checkpoint_path = run_dir.file(CHECKPOINT)
    if settings.checkpoint_every and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=accelerator.device, weights_only=False)
        accelerator.unwrap_model(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        batch_order.set_state(state["batch_order"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, step, train_time, history = state["epoch"], state["step"], state["train_time"], state["history"]
        log.info(f"resumed from checkpoint at epoch {start_epoch}, step {step}")
    metrics = MetricsWriter(run_dir, history)

    def record_eval(epoch):
        t = time.time()
        values = evaluate(task, model, data, settings.eval_batch_size, accelerator)
        record = {"epoch": epoch, "step": step, "samples": epoch * data.size("train")}
        record.update(values)
        record.update(task.extra_metrics())
        record.update(lr=scheduler.get_last_lr()[0], elapsed=round(time.time() - started, 3),
                      eval_time=round(time.time() - t, 4))
        metrics.append(record)
        log.info(_format_eval(record))
        return record

    if start_epoch == 0:
        record_eval(0)
    bar = tqdm(range(start_epoch, settings.n_epochs), disable=not _show_progress(settings),
               desc=f"{settings.task}", unit="epoch", dynamic_ncols=True)
    model.train()
    try:
        for epoch in bar:
            t = time.time()
            for batch in batches:
                loss = task.training_loss(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}, "
                                             f"step {step + 1}; try a smaller lr")
                accelerator.backward(loss)
                if settings.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                stepper.step()
                scheduler.step()
                stepper.zero_grad(set_to_none=True)
                step += 1
            train_time += time.time() - t
            done = epoch + 1
            if done % settings.eval_every == 0 or done == settings.n_epochs:
                last = record_eval(done)
                bar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k.endswith(("_accuracy", "_loss"))})
            if settings.checkpoint_every and done % settings.checkpoint_every == 0 and done < settings.n_epochs:
                metrics.flush()
                _save_checkpoint(checkpoint_path, accelerator, model, optimizer, scheduler, batch_order,
                                 done, step, train_time, metrics.records)
    finally:
        bar.close()
        metrics.flush()

    history = metrics.records
    summary = {
        "state": "done",
        "task": settings.task,
        "epochs": settings.n_epochs,
        "steps": step,
        "final": {k: v for k, v in history[-1].items() if k not in ("eval_time",)},
        **_best(history),
        **first_epochs(history),
        "parameters": {"total": total, "trainable": trainable},
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "data_time": round(data_time, 3),
        "train_time": round(train_time, 3),
        "eval_time": round(sum(r.get("eval_time", 0.0) for r in history), 3),
        "wall_time": round(time.time() - started, 3),
        "data_facts": data.facts,
    }
    summary.update(task.extra_summary(data, history))
    if task.report_columns:
        summary["report_columns"] = list(task.report_columns)
    run_dir.write_summary(summary)
    if checkpoint_path.exists():
        checkpoint_path.unlink()  # the finished run's metrics and summary say everything
    log.info("summary: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in summary["final"].items()) + f", wall time {summary['wall_time']:.1f}s")
    return summary


def _save_checkpoint(path, accelerator, model, optimizer, scheduler, batch_order, epoch, step, train_time, history):
    state = {"model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "batch_order": batch_order.get_state(),
             "torch_rng": torch.get_rng_state(), "epoch": epoch, "step": step, "train_time": train_time,
             "history": list(history)}
    atomic_replace(path, lambda tmp: torch.save(state, tmp))
