"""A toy task the loop's tests register (tasks.TASK_MODULES) to exercise a stream source, which no
programme has yet: the sign of a fixed linear function of 4 Gaussian features, learned by a linear
classifier from a fresh batch every step, validated on a fixed set of 1,000 examples."""
import torch
import torch.nn.functional as F
from torch import nn

from settings import CommonSettings, setting, with_defaults
from tasks.base import Data
from tasks.base import Task as BaseTask

TRUE_W = torch.tensor([1.0, -2.0, 0.5, 1.5])


def sample(count, generator):
    x = torch.randn(count, 4, generator=generator, device=generator.device)
    return {"x": x, "y": (x @ TRUE_W.to(x.device) > 0).float()}


@with_defaults(n_epochs=None, n_steps=200, eval_every=None, eval_every_steps=50, batch_size=64, lr=0.05,
               max_grad_norm=0.0)
class Settings(CommonSettings):
    task: str = setting("toy_stream", "the research programme")
    valid_size: int = setting(1000, "validation examples", low=1)

    def training_source(self):
        return "stream"


class Task(BaseTask):
    name = "toy_stream"
    Settings = Settings

    def build_data(self):
        valid = sample(self.settings.valid_size, torch.Generator().manual_seed(12345))
        return Data(train=sample, splits={"valid": valid}, facts={"features": 4})

    def build_model(self, data):
        return nn.Linear(4, 1)

    def training_loss(self, model, batch):
        return F.binary_cross_entropy_with_logits(model(batch["x"]).squeeze(1), batch["y"])

    def evaluate_batch(self, model, batch):
        logits = model(batch["x"]).squeeze(1)
        n = len(logits)
        return {"loss": (F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="sum"), n),
                "accuracy": (((logits > 0).float() == batch["y"]).sum(), n)}

    def diagnostics(self, model, data):
        return {"weight_norm": float(model.weight.norm())}
