"""The contract between a research programme and the one training loop (training.py).

A task knows its programme: its settings, how to make the data, which model suits it, the loss and the
metrics. The loop knows none of that; it draws batches from the task's training source, steps the
optimiser and records what `evaluate_batch` and `diagnostics` return.
"""
import dataclasses

import torch

import dataloaders
import models
import optim


@dataclasses.dataclass
class Data:
    """What a task's build_data returns.

    train: the training source, either a dict of equally long tensors (a fixed set, served in shuffled
        batches epoch after epoch) or a sampler `sample(count, generator) -> dict of tensors` drawing a
        fresh batch on the generator's device every step (a stream).
    splits: the evaluation splits, name -> dict of equally long tensors. They are separate from the
        training source; a split may be the training set itself (the same dict: it is not copied) or a
        subsample of it (`subsample`).
    facts: data facts for logs.log and summary.json (sizes, balance, overlap...).
    """
    train: object
    splits: dict
    facts: dict = dataclasses.field(default_factory=dict)

    def size(self, split):
        return dataloaders.size(self.splits[split])

    @property
    def train_size(self):
        """Examples in a fixed training set; None for a stream."""
        return dataloaders.size(self.train) if isinstance(self.train, dict) else None


def subsample(tensors, count, generator):
    """`count` examples of a split drawn without replacement (all of it when count covers it), in a random
    order from `generator`: e.g. a few thousand training facts scored at each evaluation."""
    n = dataloaders.size(tensors)
    if count >= n:
        return tensors
    index = torch.randperm(n, generator=generator)[:count]
    return {k: v[index] for k, v in tensors.items()}


class Task:
    name = "base"
    Settings = None  # dataclass of this task's settings (extends settings.CommonSettings)
    report_columns = ()  # keys of extra_summary() that report.py shows as columns of its per-run table
    # the unit of the summary's best_* and first_* (and report.py's first column): None counts a fixed set's
    # runs in epochs and a stream's in steps; 'step' where the programme is budgeted in steps (kg_reasoning)
    counted_in = None
    # Stacking (stacking.py, `sweep.py --stack K`): replicates trained as one stacked model under torch.func.vmap.
    # A stackable task's training_loss and evaluate_batch must run under vmap: no Python branch on a tensor's
    # value, no .item(); tensors it keeps as attributes are stacked over the members for it.
    stackable = False
    stack_note = ""  # why a task is not stackable (shown when a sweep asks for stacks)
    stack_varies = ()  # this task's settings, beyond stacking.STACK_VARIES, that members of a stack may differ in

    def __init__(self, settings, log):
        self.settings = settings
        self.log = log

    # ---- what each programme provides
    def build_data(self) -> Data:
        raise NotImplementedError

    def build_model(self, data: Data) -> torch.nn.Module:
        """The model the settings' spec describes (Settings.model_spec(): the same spec that settings
        validation checks with models.check)."""
        return models.build(self.settings.model_spec())

    def training_loss(self, model, batch) -> torch.Tensor:
        """Mean loss of one training batch."""
        raise NotImplementedError

    def evaluate_batch(self, model, batch) -> dict:
        """Per metric, (sum over the batch, count the sum is a mean over): e.g. {'loss': (summed token
        losses, number of tokens), 'accuracy': (examples right, examples)}. Sums and counts may be tensors
        or numbers. The loop adds them over the split's batches and records `<split>_<metric>` = sum / count,
        so per-token and per-example means are both exact whatever the batch size."""
        raise NotImplementedError

    # ---- defaults a programme may override
    def configure_optimizer(self, model, total_steps, steps_per_epoch=None):
        """The optimiser and per-step schedule the settings name (optim.py; by default AdamW with a cosine
        decay from lr to eta_min, the research codebases' default). steps_per_epoch: of a fixed training
        set (None for a stream), for schedules set in epochs."""
        return optim.build(model, self.settings, total_steps, steps_per_epoch)

    @classmethod
    def stack_refusal(cls, settings):
        """Why a run with these settings cannot be a member of a stack (one line), or None."""
        return None

    def diagnostics(self, model, data) -> dict:
        """Evaluation-time entries that need the model itself or state the task keeps while training
        (attention entropies, weight norms, a running training accuracy); called at every evaluation,
        under inference_mode, and merged into the record after the splits' metrics."""
        return {}

    def state_dict(self) -> dict:
        """State the task keeps while training (saved in checkpoints, so a resumed run reports the same
        metrics as an uninterrupted one)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    @classmethod
    def memory_estimate(cls, settings, eval_batch=None) -> dict:
        """{what: bytes} the run cannot do without at once: a lower bound that the runner compares with the
        memory free where the run trains, before any work (training.check_memory). By default what the
        model kind says of one training batch or one evaluation batch, whichever is larger; a programme
        adds its data where that can be large, and passes eval_batch where its splits are smaller than
        eval_batch_size. The keys name the settings that drive them."""
        spec = settings.model_spec() if hasattr(settings, "model_spec") else None
        if spec is None:
            return {}
        batch = settings.batch_size or getattr(settings, "train_set_size", 0) or 1
        eval_batch = eval_batch or settings.eval_batch_size
        training = {f"a training batch (batch_size {settings.batch_size}): {what}": size
                    for what, size in models.memory_floor(spec, batch, training=True).items()}
        evaluation = {f"an evaluation batch (eval_batch_size {settings.eval_batch_size}): {what}": size
                      for what, size in models.memory_floor(spec, eval_batch, training=False).items()}
        return training if sum(training.values()) >= sum(evaluation.values()) else evaluation

    def extra_summary(self, data, history) -> dict:
        """Programme-specific entries of summary.json."""
        return {}
