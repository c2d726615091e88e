"""Optimisers and learning-rate schedules, chosen by settings: the one place every programme gets them from.

    optimizer, scheduler = optim.build(model, settings, total_steps)

Optimisers (`optim`): adamw (decoupled weight decay), adam (coupled L2 weight decay), sgd (momentum
`sgd_momentum`), muon (Muon on chosen matrices, Adam on the rest). With `no_decay_bias_norm` the biases and
normalisation weights get no weight decay (as HF Trainer).

Schedules (`lr_schedule`) are counted in optimiser steps and stepped once per step. constant, linear and
cosine may start with a linear warmup from 0 to lr over `warmup_steps` steps (HF's convention: rate 0 at the
first step); linear and cosine then decay from lr to `eta_min` over the remaining steps, reaching it when
training ends (step total_steps, torch's and HF's convention). step, exponential and multistep are torch's
multiplicative schedules, set in epochs (`lr_step_size`, `lr_gamma`, `lr_milestones`) and converted to
steps with steps_per_epoch. A scheduler's get_last_lr(), the `lr` of each metrics.jsonl record, is read after
the schedule has stepped: the rate of the next step (at the end of a linear or cosine schedule, eta_min; with
assoc_memory's per-epoch ramp, the next epoch's rate), as torch's and Hugging Face's trainers log it.
"""
import math
import types

import torch

from settings import SettingsError

OPTIMIZERS = ("adamw", "adam", "sgd", "muon")
# "none" is "constant" under the name group_arithmetic's settings have always used
SCHEDULES = ("constant", "none", "linear", "cosine", "step", "exponential", "multistep")
EPOCH_SCHEDULES = ("step", "exponential", "multistep")  # torch's chained factors: no warmup in front
# Newton-Schulz schedule of the group-arithmetic paper's Muon: one (a, b, c) per iteration of
# X <- aX + (bA + cA^2)X
NS_COEFFICIENTS = ((4.01, -9.22, 5.80), (3.49, -6.38, 3.23), (3.34, -6.21, 3.20),
                   (3.64, -7.48, 4.43), (3.46, -5.35, 2.85))


def build(model, settings, total_steps, steps_per_epoch=None, muon_params=None, **overrides):
    """(optimizer, scheduler) as the settings name them, for a run of total_steps optimiser steps.

    steps_per_epoch converts the epoch-set schedules (default: total_steps // n_epochs; validation refuses
    those schedules where there are no epochs). muon_params: the
    matrices Muon updates (default: the weights of the model's nn.Linear layers). overrides replace
    settings by name, for a task whose own settings mean something else (assoc_memory's lr_end).
    """
    s = settings
    if overrides:
        unknown = sorted(set(overrides) - set(vars(settings)))
        if unknown:
            raise TypeError(f"optim.build: no settings named {unknown}")
        s = types.SimpleNamespace(**{**vars(settings), **overrides})
    optimizer = make_optimizer(model, s, muon_params)
    if steps_per_epoch is None:
        steps_per_epoch = max(1, total_steps // s.n_epochs) if s.n_epochs else 1
    return optimizer, make_scheduler(optimizer, s, total_steps, steps_per_epoch)


# ---------------------------------------------------------------- optimisers

def decay_groups(params, no_decay_bias_norm):
    """One parameter group, or with no_decay_bias_norm: the matrices with weight decay, then the rest without.

    Biases and the weights of LayerNorm / RMSNorm / BatchNorm (HF's own RMSNorm classes too) are exactly
    the parameters of fewer than 2 dimensions: nanoGPT's rule, and the set HF Trainer exempts.
    """
    if not no_decay_bias_norm:
        return [{"params": params}]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def linear_weights(model):
    """Muon's usual share of a model: its linear maps (embeddings, biases and norms stay with Adam)."""
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


def make_optimizer(model, s, muon_params=None):
    params = [p for p in model.parameters() if p.requires_grad]  # model order: it fixes the numbers
    if s.optim == "muon":
        chosen = {id(p) for p in (linear_weights(model) if muon_params is None else muon_params)}
        matrices = [p for p in params if id(p) in chosen]
        if not matrices:
            raise ValueError("optim = 'muon' found no trainable matrix to update")
        groups = [{"params": matrices, "muon": True}]
        groups += [dict(g, muon=False) for g in decay_groups([p for p in params if id(p) not in chosen],
                                                              s.no_decay_bias_norm) if g["params"]]
        return MuonAdam(groups, lr=s.lr, weight_decay=s.weight_decay, momentum=s.muon_momentum)
    groups = decay_groups(params, s.no_decay_bias_norm)
    # fused: one kernel for every parameter instead of ~10 small ops each (CPU and CUDA alike); it takes
    # real floating-point tensors only. None is torch's default (foreach on GPU, a loop on CPU).
    fused = True if s.fused and all(p.is_floating_point() for p in params) else None
    if s.optim == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.sgd_momentum, weight_decay=s.weight_decay, fused=fused)
    if s.optim == "adam":
        return torch.optim.Adam(groups, lr=s.lr, weight_decay=s.weight_decay, fused=fused)
    if s.optim == "adamw":
        return torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay, fused=fused)
    raise ValueError(f"optim = {s.optim!r} is not one of {OPTIMIZERS}")


def newton_schulz(G, coefficients=NS_COEFFICIENTS):
    """Approximately orthogonalise G (U S V^T -> about U V^T) by quintic Newton-Schulz iterations in fp32."""
    X = G.float()
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.t()
    X = X / (X.norm() + 1e-7)  # singular values into (0, 1]
    for a, b, c in coefficients:
        A = X @ X.t()
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.t() if tall else X


class MuonAdam(torch.optim.Optimizer):
    """Muon on the groups marked muon=True, Adam (coupled L2 weight decay) on the others, in one optimiser so
    that one lr scheduler and one state_dict cover both.

    Muon, as the group-arithmetic paper's runs use it: m <- mu m + (1 - mu) g (a moving average, no
    Nesterov); p <- p (1 - lr wd) - lr NS5(m) with five Newton-Schulz iterations (one coefficient triple
    each). (torch.optim.Muon differs: a single coefficient triple, a shape-dependent lr scale that cannot be
    switched off, and bf16 iterations.)
    """

    def __init__(self, param_groups, lr, weight_decay=0.0, momentum=0.99, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(param_groups, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas,
                                            eps=eps, muon=False))
        for group in self.param_groups:
            if group["muon"] and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon updates matrices only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["muon"]:
                    if not state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf = state["momentum_buffer"]
                    buf.lerp_(p.grad, 1 - group["momentum"])
                    p.mul_(1 - lr * wd)
                    p.add_(newton_schulz(buf).to(p.dtype), alpha=-lr)
                else:
                    self._adam(p, state, group)
        return loss

    @staticmethod
    def _adam(p, state, group):
        beta1, beta2 = group["betas"]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        state["step"] += 1
        grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1, bias2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"] / bias2).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bias1)


# ---------------------------------------------------------------- schedules

class RateLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR whose function gives the rate itself, not a factor of the optimiser's lr: a ramp may start
    at 0 or rise, and the rate is exactly the formula's (no lr * (rate / lr) rounding)."""

    def get_lr(self):
        return [rate(self.last_epoch) for rate in self.lr_lambdas]


def rate_at(step, kind, lr, eta_min, warmup_steps, total_steps):
    """The rate of optimiser step `step` (0-based) of a constant / linear / cosine schedule with warmup."""
    if step < warmup_steps:
        return lr * step / warmup_steps
    if kind in ("constant", "none"):
        return lr
    span = max(1, total_steps - warmup_steps)
    done = min(step - warmup_steps, span)
    if kind == "linear":
        return lr + (eta_min - lr) * done / span
    if kind == "cosine":
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * done / span)) / 2
    raise ValueError(f"lr_schedule = {kind!r} has no warmup form; choose constant, linear or cosine")


def make_scheduler(optimizer, s, total_steps, steps_per_epoch=1):
    kind, warmup = s.lr_schedule, s.warmup_steps
    if kind not in SCHEDULES:
        raise ValueError(f"lr_schedule = {kind!r} is not one of {SCHEDULES}")
    if warmup and kind in EPOCH_SCHEDULES:
        raise ValueError(f"warmup_steps = {warmup} cannot go with lr_schedule = {kind!r}")
    if warmup and warmup >= total_steps:
        # known only now where the budget is in epochs or samples (the training set's size): the user's to mend
        raise SettingsError(f"warmup_steps = {warmup} is not shorter than the run's {total_steps} optimiser steps: "
                            "the rate would never reach lr; lower warmup_steps or lengthen the run")
    sched = torch.optim.lr_scheduler
    if kind == "cosine" and not warmup:
        # torch's recursive form, not rate_at's closed one: they differ in the last bits, and runs made
        # before this module used torch's
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=s.eta_min)
    if kind == "step":
        return sched.StepLR(optimizer, step_size=s.lr_step_size * steps_per_epoch, gamma=s.lr_gamma)
    if kind == "exponential":
        return sched.ExponentialLR(optimizer, gamma=s.lr_gamma ** (1 / steps_per_epoch))
    if kind == "multistep":
        return sched.MultiStepLR(optimizer, milestones=[m * steps_per_epoch for m in s.lr_milestones],
                                 gamma=s.lr_gamma)
    return RateLR(optimizer, lambda step: rate_at(step, kind, s.lr, s.eta_min, warmup, total_steps))
