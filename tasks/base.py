"""The contract between a research programme and the one training loop (training.py).

A task knows its programme: how to make the data, which model suits it, the loss and the metrics.
The loop knows none of that; it batches the task's tensors, steps the optimiser and records what
`evaluate_batch` returns.
"""
import dataclasses

import torch

import optim


@dataclasses.dataclass
class Data:
    """In-memory splits: name -> dict of equally long tensors (the loop slices them into batches)."""
    splits: dict
    facts: dict = dataclasses.field(default_factory=dict)

    @property
    def train(self):
        return self.splits["train"]

    def size(self, split):
        return len(next(iter(self.splits[split].values())))


class Task:
    name = "base"
    Settings = None  # dataclass of this task's settings (extends settings.CommonSettings)
    report_columns = ()  # keys of extra_summary() that report.py shows as columns of its per-run table

    def __init__(self, settings, log):
        self.settings = settings
        self.log = log

    # ---- what each programme provides
    def build_data(self) -> Data:
        raise NotImplementedError

    def build_model(self, data: Data) -> torch.nn.Module:
        raise NotImplementedError

    def training_loss(self, model, batch) -> torch.Tensor:
        """Mean loss of one training batch."""
        raise NotImplementedError

    def evaluate_batch(self, model, batch) -> dict:
        """Sums over the batch: {'loss': summed loss, 'correct': number right}. The loop divides by
        the split size and reports `<split>_loss` and `<split>_accuracy`."""
        raise NotImplementedError

    # ---- defaults a programme may override
    def configure_optimizer(self, model, total_steps):
        """The optimiser and per-step schedule the settings name (optim.py; by default AdamW with a cosine
        decay from lr to eta_min, the research codebases' default)."""
        return optim.build(model, self.settings, total_steps)

    def extra_metrics(self) -> dict:
        """Programme-specific entries of each evaluation record (e.g. statistics the task kept while
        training); merged into the metrics line after the per-split ones."""
        return {}

    def extra_summary(self, data, history) -> dict:
        """Programme-specific entries of summary.json."""
        return {}
