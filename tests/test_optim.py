"""optim.py: each optimiser, Muon's share, the no-decay group, the schedules against hand-computed rates, the
epoch-set schedules, and the refusals of settings that cannot go together."""
import dataclasses
import io
import math

import pytest
import torch
from torch import nn

import optim
import settings
from settings import CommonSettings, SettingsError


pytestmark = pytest.mark.usefixtures("one_thread")


def make(**values):
    """Validated common settings (no task: the optimiser module knows none)."""
    return settings.build(values, CommonSettings)


class Net(nn.Module):
    """Every kind of parameter optim.py sorts: an embedding, linear weights and biases, norms, a 1-D scale."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.hidden = nn.Linear(4, 6)
        self.norm = nn.LayerNorm(6)
        self.rms = nn.RMSNorm(6)
        self.bn = nn.BatchNorm1d(6)
        self.scale = nn.Parameter(torch.ones(6))
        self.head = nn.Linear(6, 3, bias=False)

    def forward(self, tokens):
        h = self.hidden(self.embed(tokens))
        return self.head(self.bn(self.rms(self.norm(h))) * self.scale)


def loss(model):
    return model(torch.tensor([0, 1, 2, 3, 4, 1])).square().mean()


def step(optimizer, model):
    optimizer.zero_grad()
    loss(model).backward()
    optimizer.step()


def rates(optimizer, scheduler, steps):
    """The rate each of `steps` optimiser steps used, checked equal in every group and in get_last_lr()."""
    seen = []
    for _ in range(steps):
        group_rates = {g["lr"] for g in optimizer.param_groups}
        assert len(group_rates) == 1 and scheduler.get_last_lr() == [g["lr"] for g in optimizer.param_groups]
        seen.append(group_rates.pop())
        optimizer.step()
        scheduler.step()
    return seen


# ---------------------------------------------------------------- optimisers

@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                       ("sgd", torch.optim.SGD), ("muon", optim.MuonAdam)])
def test_each_optimiser_builds_and_steps_every_parameter(name, cls):
    torch.manual_seed(0)
    model = Net()
    optimizer, scheduler = optim.build(model, make(optim=name, lr=0.01), total_steps=10)
    assert type(optimizer) is cls
    before = [p.detach().clone() for p in model.parameters()]
    start = loss(model).item()
    for _ in range(5):
        step(optimizer, model)
        scheduler.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert loss(model).item() < start
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.9


def test_fused_where_asked_and_possible():
    model = Net()
    assert optim.build(model, make(optim="adam"), 10)[0].param_groups[0]["fused"] is True
    assert optim.build(model, make(optim="adam", fused=False), 10)[0].param_groups[0]["fused"] is None
    # torch's fused kernels take real tensors only: complex weights get the default implementation
    complex_model = nn.Module()
    complex_model.W = nn.Parameter(torch.randn(3, 3, dtype=torch.cfloat))
    optimizer, _ = optim.build(complex_model, make(optim="adamw"), 10)
    assert optimizer.param_groups[0]["fused"] is None
    complex_model.W.abs().sum().backward()
    optimizer.step()


def test_parameters_keep_the_model_order():
    model = Net()
    optimizer, _ = optim.build(model, make(), 10)
    assert len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["params"] == list(model.parameters())  # the order fixes the numbers


def test_frozen_parameters_are_left_out():
    model = Net()
    model.hidden.weight.requires_grad_(False)
    optimizer, _ = optim.build(model, make(), 10)
    assert not any(p is model.hidden.weight for g in optimizer.param_groups for p in g["params"])


def test_muon_takes_the_linear_weights_by_default_and_adam_the_rest():
    model = Net()
    optimizer, _ = optim.build(model, make(optim="muon", weight_decay=0.1), 10)
    muon = [p for g in optimizer.param_groups if g["muon"] for p in g["params"]]
    adam = [p for g in optimizer.param_groups if not g["muon"] for p in g["params"]]
    assert muon == [model.hidden.weight, model.head.weight]
    assert all(p.ndim == 2 for p in muon)
    assert {id(p) for p in adam} == {id(p) for p in model.parameters()} - {id(p) for p in muon}
    assert optimizer.param_groups[0]["momentum"] == 0.99


def test_muon_takes_exactly_the_matrices_a_task_chooses():
    model = Net()
    optimizer, _ = optim.build(model, make(optim="muon"), 10, muon_params=[model.head.weight])
    assert [p for g in optimizer.param_groups if g["muon"] for p in g["params"]] == [model.head.weight]
    with pytest.raises(ValueError, match="matrices only"):
        optim.build(model, make(optim="muon"), 10, muon_params=[model.hidden.bias])
    with pytest.raises(ValueError, match="no trainable matrix"):
        optim.build(nn.LayerNorm(3), make(optim="muon"), 10)


def test_muon_update_is_orthogonal_and_decay_is_decoupled():
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(256, 46))
    opt = optim.MuonAdam([{"params": [W], "muon": True}], lr=1.0, weight_decay=0.0, momentum=0.99)
    W.grad = torch.randn(256, 46) * torch.linspace(0.2, 5, 46)  # unevenly scaled columns
    before = W.detach().clone()
    opt.step()
    update = before - W.detach()
    s = torch.linalg.svdvals(update)
    assert s.min() > 0.7 and s.max() < 1.3, s
    U, _, Vh = torch.linalg.svd(W.grad, full_matrices=False)
    assert torch.linalg.norm(update - U @ Vh) / torch.linalg.norm(U @ Vh) < 0.25
    assert torch.linalg.svdvals(W.grad).max() / torch.linalg.svdvals(W.grad).min() > 5  # the input was not
    # with no gradient signal, a step is the decoupled decay alone: p <- p (1 - lr wd)
    P = torch.nn.Parameter(torch.randn(8, 4))
    opt = optim.MuonAdam([{"params": [P], "muon": True}], lr=0.1, weight_decay=0.5)
    P.grad = torch.zeros(8, 4)
    start = P.detach().clone()
    opt.step()
    assert torch.allclose(P.detach(), start * (1 - 0.1 * 0.5))


def test_torch_muon_is_not_the_papers_update():
    """Why MuonAdam exists: torch.optim.Muon scales the step of a tall matrix by sqrt(rows / cols)."""
    torch.manual_seed(0)
    grad = torch.randn(64, 4)
    ours, theirs = torch.nn.Parameter(torch.zeros(64, 4)), torch.nn.Parameter(torch.zeros(64, 4))
    a = optim.MuonAdam([{"params": [ours], "muon": True}], lr=1.0, weight_decay=0.0)
    b = torch.optim.Muon([theirs], lr=1.0, weight_decay=0.0, momentum=0.99, nesterov=False)
    ours.grad, theirs.grad = grad.clone(), grad.clone()
    a.step()
    b.step()
    # sqrt(64 / 4) = 4 times larger, up to the two Newton-Schulz schedules' different singular values
    assert 2.5 < theirs.norm() / ours.norm() < 5


# ---------------------------------------------------------------- weight decay off for biases and norms

def no_decay_names(model, optimizer):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "muon"])
def test_no_decay_group_holds_exactly_the_biases_and_norm_weights(name):
    model = Net()
    optimizer, _ = optim.build(model, make(optim=name, weight_decay=0.1, no_decay_bias_norm=True), 10)
    assert no_decay_names(model, optimizer) == {"hidden.bias", "norm.weight", "norm.bias", "rms.weight",
                                                "bn.weight", "bn.bias", "scale"}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = [names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.1 for p in g["params"]]
    assert sorted(decayed) == ["embed.weight", "head.weight", "hidden.weight"]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    off, _ = optim.build(model, make(optim=name, weight_decay=0.1), 10)
    assert no_decay_names(model, off) == set()


def test_no_decay_group_is_not_decayed():
    """With no gradient, an AdamW step is the decay alone: matrices shrink by lr * wd, vectors stay."""
    model = Net()
    optimizer, _ = optim.build(model, make(lr=0.1, weight_decay=0.5, lr_schedule="constant",
                                           no_decay_bias_norm=True), 10)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for n, p in model.named_parameters():
        factor = 1 - 0.1 * 0.5 if p.ndim >= 2 else 1.0
        assert torch.allclose(p.detach(), before[n] * factor), n


# ---------------------------------------------------------------- schedules counted in steps

def schedule(total_steps, **values):
    model = nn.Linear(2, 2)
    return optim.build(model, make(**values), total_steps)


@pytest.mark.parametrize("kind, expected", [
    # lr 0.1, eta_min 0.01, warmup 4 of 20 steps: lr * step / 4, then over the 16 steps left
    ("constant", {0: 0.0, 1: 0.025, 3: 0.075, 4: 0.1, 12: 0.1, 19: 0.1}),
    ("none", {0: 0.0, 2: 0.05, 4: 0.1, 19: 0.1}),
    ("linear", {0: 0.0, 2: 0.05, 4: 0.1, 8: 0.1 - 0.09 * 4 / 16, 12: 0.055, 19: 0.1 - 0.09 * 15 / 16}),
    ("cosine", {0: 0.0, 2: 0.05, 4: 0.1, 8: 0.01 + 0.09 * (1 + math.cos(math.pi / 4)) / 2, 12: 0.055,
                19: 0.01 + 0.09 * (1 + math.cos(math.pi * 15 / 16)) / 2}),
])
def test_warmup_then_schedule_against_hand_computed_rates(kind, expected):
    optimizer, scheduler = schedule(20, lr=0.1, eta_min=0.01 if kind in ("linear", "cosine") else 0.0,
                                    warmup_steps=4, lr_schedule=kind)
    seen = rates(optimizer, scheduler, 20)
    assert {k: seen[k] for k in expected} == pytest.approx(expected, abs=1e-15)
    # the end rate is reached when training ends (after the last of the 20 steps)
    if kind in ("linear", "cosine"):
        assert scheduler.get_last_lr()[0] == pytest.approx(0.01, abs=1e-15)


def test_linear_without_warmup_reaches_its_end_after_the_last_step():
    optimizer, scheduler = schedule(4, lr=0.1, lr_schedule="linear")
    assert rates(optimizer, scheduler, 4) == pytest.approx([0.1, 0.075, 0.05, 0.025], abs=1e-15)
    assert scheduler.get_last_lr() == [0.0]
    assert rates(optimizer, scheduler, 2) == [0.0, 0.0]  # held at the end, never below (assoc_memory's last step)


def test_cosine_without_warmup_is_torchs():
    optimizer, scheduler = schedule(10, lr=0.1, eta_min=0.01)
    assert type(scheduler) is torch.optim.lr_scheduler.CosineAnnealingLR
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)]
    assert rates(optimizer, scheduler, 10) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kind, extra, expected", [
    # 3 steps per epoch (30 steps over n_epochs 10): the epoch-set schedules are stepped per step
    ("step", dict(lr_step_size=2, lr_gamma=0.5), {0: 0.1, 5: 0.1, 6: 0.05, 11: 0.05, 12: 0.025}),
    ("exponential", dict(lr_gamma=0.9), {0: 0.1, 3: 0.09, 6: 0.081, 15: 0.1 * 0.9 ** 5}),
    ("multistep", dict(lr_milestones=[1, 3], lr_gamma=0.1), {0: 0.1, 2: 0.1, 3: 0.01, 8: 0.01, 9: 0.001}),
])
def test_epoch_schedules_are_converted_to_steps(kind, extra, expected):
    optimizer, scheduler = schedule(30, lr=0.1, n_epochs=10, lr_schedule=kind, **extra)
    seen = rates(optimizer, scheduler, 30)
    assert {k: seen[k] for k in expected} == pytest.approx(expected, rel=1e-12)


def test_steps_per_epoch_given_overrides_n_epochs():
    model = nn.Linear(2, 2)
    optimizer, scheduler = optim.build(model, make(lr=0.1, n_epochs=10, lr_schedule="step", lr_step_size=1,
                                                   lr_gamma=0.5), 30, steps_per_epoch=5)
    seen = rates(optimizer, scheduler, 11)
    assert seen[4] == 0.1 and seen[5] == 0.05 and seen[10] == 0.025


def test_a_rate_schedule_survives_a_checkpoint():
    """The loop saves scheduler.state_dict() with torch.save; a resumed schedule goes on where it stopped."""
    optimizer, scheduler = schedule(20, lr=0.1, warmup_steps=4, lr_schedule="linear")
    rates(optimizer, scheduler, 7)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    resumed_opt, resumed = schedule(20, lr=0.1, warmup_steps=4, lr_schedule="linear")
    resumed_opt.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    assert rates(resumed_opt, resumed, 13) == rates(optimizer, scheduler, 13)


def test_overrides_map_a_tasks_own_settings_onto_the_module():
    """assoc_memory's ramp: rates chosen by the task (0 included, rising), linear from lr to eta_min."""
    model = nn.Linear(2, 2)
    s = make(lr=0.5)
    optimizer, scheduler = optim.build(model, s, 4, lr=0.0, eta_min=0.004, lr_schedule="linear")
    assert rates(optimizer, scheduler, 4) == pytest.approx([0.0, 0.001, 0.002, 0.003], abs=1e-15)
    assert s.lr == 0.5 and s.lr_schedule == "cosine"  # the settings themselves are left alone
    with pytest.raises(TypeError, match="lr_ned"):
        optim.build(model, s, 4, lr_ned=0.1)


# ---------------------------------------------------------------- refusals

def refusal(**values):
    with pytest.raises(SettingsError) as info:
        make(**values)
    return str(info.value)


@pytest.mark.parametrize("values, needles", [
    (dict(warmup_steps=10, lr_schedule="step"), ["warmup_steps = 10", "lr_schedule = 'step'"]),
    (dict(warmup_steps=10, lr_schedule="multistep", lr_milestones=[2]), ["warmup_steps = 10"]),
    (dict(lr_schedule="multistep"), ["needs lr_milestones"]),
    (dict(lr_schedule="multistep", lr_milestones=[3, 2]), ["lr_milestones = [3, 2] must be increasing"]),
    (dict(optim="adamm"), ["optim = 'adamm'", "did you mean 'adam'"]),
    (dict(lr_schedule="cosin"), ["lr_schedule = 'cosin'", "did you mean 'cosine'"]),
    (dict(warmup_steps=-1), ["warmup_steps = -1 is below its minimum"]),
    (dict(warmup_steps=100, n_steps=100, n_epochs=None), ["warmup_steps = 100 is not shorter than n_steps = 100"]),
])
def test_settings_that_cannot_go_together_are_refused_naming_the_setting(values, needles):
    message = refusal(**values)
    assert all(needle in message for needle in needles), message


def test_a_tasks_default_eta_min_is_no_note():
    """target_functions' default eta_min is 1e-5: a constant schedule must not need eta_min = 0 written."""
    assert settings.build({"task": "target_functions", "lr_schedule": "constant"}).notes() == []
    notes = settings.build({"task": "target_functions", "lr_schedule": "constant", "eta_min": 1e-4}).notes()
    assert len(notes) == 1 and "eta_min = 0.0001 has no effect with lr_schedule = 'constant'" in notes[0]


def test_warmup_with_linear_cosine_constant_is_accepted():
    for kind in ("constant", "linear", "cosine"):
        assert make(warmup_steps=10, lr_schedule=kind).warmup_steps == 10


def test_warmup_as_long_as_the_run_is_refused_when_the_run_is_known():
    # a SettingsError (the user's to mend, reported in one line), known only once the data gives the steps
    with pytest.raises(SettingsError, match="warmup_steps = 20 is not shorter than the run's 20"):
        schedule(20, warmup_steps=20, lr_schedule="constant")


def test_the_settings_offer_exactly_what_the_module_builds():
    fields = settings.fields_of(CommonSettings)
    assert fields["optim"].metadata["choices"] == optim.OPTIMIZERS
    assert fields["lr_schedule"].metadata["choices"] == optim.SCHEDULES
    names = [f.name for f in dataclasses.fields(CommonSettings)]
    for name in ("optim", "fused", "no_decay_bias_norm", "sgd_momentum", "muon_momentum", "lr_schedule",
                 "warmup_steps", "lr_step_size", "lr_gamma", "lr_milestones"):
        assert name in names
