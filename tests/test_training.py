"""The one training loop: budgets in steps, training sources, sums and counts, diagnostics, exact resume."""
import json
import math
import time

import pytest
import torch

import dataloaders
import main
import settings
import tasks
import training
from conftest import TINY


@pytest.fixture(autouse=True)
def toy_task(monkeypatch):
    monkeypatch.setitem(tasks.TASK_MODULES, "toy_stream", "toy_tasks")


def records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in training.TIMINGS} for line in lines]


def summary_without_timings(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in summary["final"].items() if k not in training.TIMINGS}


# ---------------------------------------------------------------- a stream source

def test_a_stream_trained_task_learns_and_records_steps_and_samples(tmp_path):
    s = settings.build({"task": "toy_stream", "progress": "off"})
    summary = main.run(s, tmp_path / "run")
    history = records(tmp_path / "run")
    assert [r["step"] for r in history] == [0, 50, 100, 150, 200]
    assert [r["samples"] for r in history] == [0, 3200, 6400, 9600, 12800]
    assert all("epoch" not in r for r in history)  # a stream has no epochs
    assert history[0]["valid_accuracy"] < 0.8 < 0.95 < history[-1]["valid_accuracy"]
    assert summary["steps"] == 200 and summary["samples"] == 12800 and "epochs" not in summary


def test_stream_batches_are_fresh_and_reproducible_from_the_seed():
    import toy_tasks
    a = dataloaders.make_source(toy_tasks.sample, 8, 3, "cpu")
    b = dataloaders.make_source(toy_tasks.sample, 8, 3, "cpu")
    first, second = a.next()[0]["x"], a.next()[0]["x"]
    assert not torch.equal(first, second)
    assert torch.equal(b.next()[0]["x"], first)
    state = b.state_dict()
    expected = b.next()[0]["x"]
    b.load_state_dict(state)
    assert torch.equal(b.next()[0]["x"], expected) and torch.equal(expected, second)


def test_the_fixed_set_serves_every_example_once_per_epoch_and_resumes_mid_epoch():
    tensors = {"i": torch.arange(10)}
    source = dataloaders.FixedSet(tensors, 4, torch.Generator().manual_seed(0))
    assert source.steps_per_epoch == 3
    epoch = [source.next() for _ in range(3)]
    assert [size for _, size in epoch] == [4, 4, 2]
    assert sorted(torch.cat([b["i"] for b, _ in epoch]).tolist()) == list(range(10))
    source.next()  # one batch into epoch 2
    state = source.state_dict()
    rest = [source.next()[0]["i"] for _ in range(5)]
    again = dataloaders.FixedSet(tensors, 4, torch.Generator().manual_seed(99))
    again.load_state_dict(state)
    assert all(torch.equal(a, again.next()[0]["i"]) for a in rest)


# ---------------------------------------------------------------- budgets and intervals

def test_a_budget_in_samples_on_a_fixed_set_resolves_to_steps_and_fractional_epochs(tmp_path):
    # 20 training strings in batches of 10: 25 samples take 3 steps (30 samples, 1.5 epochs)
    s = settings.build({**TINY, "n_epochs": None, "n_samples": 25, "eval_every": None, "eval_every_samples": 10})
    summary = main.run(s, tmp_path / "run")
    history = records(tmp_path / "run")
    assert [(r["step"], r["samples"], r["epoch"]) for r in history] == [(0, 0, 0), (1, 10, 0.5), (2, 20, 1),
                                                                         (3, 30, 1.5)]
    assert summary["steps"] == 3 and summary["epochs"] == 1.5


def test_a_budget_in_samples_on_a_fixed_set_with_a_partial_last_batch_trains_that_many_samples(tmp_path):
    # 20 strings in batches of 6: an epoch is 6 + 6 + 6 + 2 (4 steps); 50 samples are 2 epochs and 10 more,
    # 8 + 2 steps (ceil(50 / 6) = 9 steps would stop at 44)
    s = settings.build({**TINY, "batch_size": 6, "n_epochs": None, "n_samples": 50, "eval_every": None,
                        "eval_every_samples": 20})
    assert training.plan(s, dataloaders.FixedSet({"x": torch.zeros(20)}, 6, None)).total_steps == 10
    summary = main.run(s, tmp_path / "run")
    history = records(tmp_path / "run")
    assert [(r["samples"], r["epoch"]) for r in history] == [(0, 0), (20, 1), (40, 2), (52, 2.6)]
    assert summary["steps"] == 10 and summary["epochs"] == 2.6


def test_an_interval_in_samples_fires_when_a_multiple_is_crossed():
    interval = ("samples", 25)
    fired = [step for step in range(1, 11) if training.due(interval, step, (step - 1) * 10, step * 10)]
    assert fired == [3, 5, 8, 10]  # samples 30, 50, 80, 100 cross 25, 50, 75, 100


def test_a_budget_in_steps_given_on_the_command_line_replaces_the_files_epochs(tmp_path):
    path = tmp_path / "base.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in TINY.items()))
    s = settings.load(path, {"n_steps": 3})
    assert (s.n_epochs, s.n_steps) == (None, 3)
    assert training.plan(s, dataloaders.FixedSet({"x": torch.zeros(20)}, 10, None)).total_steps == 3


@pytest.mark.parametrize("values, words", [
    ({"n_epochs": 3, "n_steps": 10}, ["n_epochs = 3", "n_steps = 10", "training budget"]),
    ({"n_steps": 10, "n_samples": 100, "n_epochs": None}, ["n_steps = 10", "n_samples = 100"]),
    ({"eval_every": 2, "eval_every_steps": 5}, ["eval_every = 2", "eval_every_steps = 5", "evaluation interval"]),
    ({"checkpoint_every": 1, "checkpoint_every_samples": 50}, ["checkpoint_every = 1", "checkpoint interval"]),
    ({"n_epochs": None}, ["no training budget", "n_steps"]),
])
def test_two_budgets_or_intervals_at_once_are_refused_naming_them(values, words):
    with pytest.raises(settings.SettingsError) as error:
        settings.build({**TINY, **values})
    assert all(word in str(error.value) for word in words), str(error.value)


@pytest.mark.parametrize("values, name", [
    ({"n_steps": None, "n_epochs": 3}, "n_epochs"),
    ({"eval_every": 1, "eval_every_steps": None}, "eval_every"),
    ({"checkpoint_every": 2}, "checkpoint_every"),
])
def test_intervals_in_epochs_are_refused_on_a_stream(values, name):
    with pytest.raises(settings.SettingsError) as error:
        settings.build({"task": "toy_stream", **values})
    message = str(error.value)
    assert f"{name} = " in message and "no epochs" in message
    assert f"{name.replace('n_epochs', 'n')}_steps" in message


def test_a_schedule_set_in_epochs_is_refused_on_a_stream():
    with pytest.raises(settings.SettingsError, match="lr_schedule = 'step' is set in epochs"):
        settings.build({"task": "toy_stream", "lr_schedule": "step"})


def test_a_fixed_set_passes_its_epoch_length_to_epoch_set_schedules(tmp_path):
    # 20 strings in batches of 10: 2 steps an epoch; lr halves every epoch, i.e. every 2 steps
    values = {k: v for k, v in TINY.items() if k != "eta_min"}  # the step schedule has no end rate
    s = settings.build({**values, "n_epochs": 3, "lr_schedule": "step", "lr_step_size": 1, "lr_gamma": 0.5})
    main.run(s, tmp_path / "run")
    assert [r["lr"] for r in records(tmp_path / "run")] == [pytest.approx(TINY["lr"] * f) for f in (1, .5, .25, .125)]


def test_with_defaults_changes_a_default_and_keeps_the_common_help():
    import toy_tasks
    fields = settings.fields_of(toy_tasks.Settings)
    common = settings.fields_of(settings.CommonSettings)
    assert fields["n_steps"].default == 200 and common["n_steps"].default is None
    assert fields["n_steps"].metadata == common["n_steps"].metadata
    with pytest.raises(TypeError, match="no inherited setting"):
        settings.with_defaults(n_stepz=3)(type("S", (settings.CommonSettings,), {}))


# ---------------------------------------------------------------- sums and counts

class TokenTask:
    """Sequences of variable length (-1 pads): per-token loss and per-example exact match."""

    def evaluate_batch(self, model, batch):
        tokens = batch["tokens"]
        mask = tokens >= 0
        loss = (tokens.float() * mask).sum()  # a 'loss' of t per token
        right = ((tokens % 2 == 0) | ~mask).all(dim=1)  # an example is right when all its tokens are even
        return {"token_loss": (loss, mask.sum()), "exact_match": (right.sum(), len(tokens))}

    def diagnostics(self, model, data):
        return {}


def test_per_token_and_per_example_means_are_exact_over_uneven_batches():
    tokens = torch.tensor([[2, 4, -1, -1], [1, -1, -1, -1], [2, 2, 2, 2], [5, 6, 7, -1], [0, -1, -1, -1]])
    data = type("D", (), {"splits": {"valid": {"tokens": tokens}}})()
    accelerator = training.make_accelerator(settings.build(TINY))
    model = torch.nn.Linear(1, 1)
    for batch_size in (1, 2, 3, 5):
        out = training.evaluate(TokenTask(), model, data, batch_size, accelerator)
        assert out["valid_token_loss"] == pytest.approx((2 + 4 + 1 + 8 + 18 + 0) / 11)
        assert out["valid_exact_match"] == pytest.approx(3 / 5)


# ---------------------------------------------------------------- the diagnostics hook

def test_the_diagnostics_hook_sees_the_model_at_every_evaluation(tmp_path):
    s = settings.build({"task": "toy_stream", "progress": "off", "n_steps": 20, "eval_every_steps": 10})
    main.run(s, tmp_path / "run")
    history = records(tmp_path / "run")
    torch.manual_seed(s.seed)
    initial = torch.nn.Linear(4, 1)  # what the loop builds before the first step, from the same seed
    assert history[0]["weight_norm"] == pytest.approx(float(initial.weight.detach().norm()))
    assert history[-1]["weight_norm"] != pytest.approx(history[0]["weight_norm"])


def test_each_record_after_the_first_has_the_mean_training_loss_of_the_steps_since_the_one_before(tmp_path,
                                                                                                   monkeypatch):
    """step_loss: the training steps' own losses (train mode, dropout on), averaged over the steps since the
    previous evaluation, as Hugging Face's Trainer logs 'loss'; the evaluations' <split>_loss are eval-mode."""
    from tasks import parity_cot
    losses = []
    original = parity_cot.Task.training_loss

    def kept(task, model, batch):
        loss = original(task, model, batch)
        losses.append(loss.item())
        return loss

    monkeypatch.setattr(parity_cot.Task, "training_loss", kept)
    s = settings.build({**RESUMABLE["parity_cot"], "checkpoint_every_steps": None, "progress": "off"})
    main.run(s, tmp_path / "run")
    history = records(tmp_path / "run")
    assert "step_loss" not in history[0] and [r["step"] for r in history] == [0, 2, 4, 6, 8, 10, 12]
    for before, record in zip(history, history[1:]):
        steps = losses[before["step"]:record["step"]]
        assert record["step_loss"] == pytest.approx(sum(steps) / len(steps), rel=1e-12)
    assert history[-1]["step_loss"] != pytest.approx(history[-1]["train_loss"])  # dropout, and before the step


def test_a_stream_trains_its_budget_of_samples_exactly(tmp_path):
    """n_samples = 235 in batches of 16: 14 batches of 16 and a last one of the 11 left (as the parity original
    trains 10^7 in batches of 512), so the summary's samples and a never-learned run's '>= budget' are 235."""
    s = settings.build({**RESUMABLE["parity_cot_stream"], "checkpoint_every_steps": None, "progress": "off"})
    summary = main.run(s, tmp_path / "run")
    assert (summary["steps"], summary["samples"], summary["budget_samples"]) == (15, 235, 235)
    assert summary["sample_complexity_text"] in (">= 235", str(summary["sample_complexity"]))
    assert [r["samples"] for r in records(tmp_path / "run")][-2:] == [16 * 12, 235]


# ---------------------------------------------------------------- exact resume

RESUMABLE = {
    "target_functions": {**TINY, "n_epochs": 3, "dropout": 0.1, "checkpoint_every": 1},
    "group_arithmetic_mid_epoch": {"task": "group_arithmetic", "M": 11, "batch_size": 32, "n_epochs": 3,
                                   "eval_every": None, "eval_every_steps": 2, "checkpoint_every_steps": 3},
    # learning fast enough that the last-100-batches accuracy differs between a window that holds the
    # batches before the checkpoint and one that does not
    "assoc_memory": {"task": "assoc_memory", "N": 6, "d": 6, "H": 4, "num_batch": 4, "batch_size": 32,
                     "n_epochs": 6, "lr": 0.1, "lr_end": 0.01, "eval_every": 1, "checkpoint_every": 3},
    "toy_stream": {"task": "toy_stream", "n_steps": 40, "eval_every_steps": 10, "checkpoint_every_steps": 10},
    # dropout masks of the counter noise: a function of the training calls made, which the checkpoint keeps
    "parity_cot": {"task": "parity_cot", "n_bits": 8, "k": 3, "n_train": 96, "n_valid": 64, "train_eval_size": 32,
                   "n_embd": 16, "n_layer": 2, "n_head": 2, "batch_size": 16, "n_samples": 16 * 12,
                   "eval_every_samples": None, "eval_every_steps": 2, "checkpoint_every_steps": 5,
                   "entropy_samples": 8, "dropout_noise": "counter"},
    # the distinct stream's place in its order (a count the checkpoint keeps beside the generator's state);
    # 8 bits minus 64 validation inputs leave 192, so the 235 samples go into a second pass; the last batch
    # holds the 11 left of the budget
    "parity_cot_stream": {"task": "parity_cot", "n_bits": 8, "k": 3, "n_valid": 64, "n_embd": 16, "n_layer": 1,
                          "n_head": 2, "batch_size": 16, "n_samples": 16 * 15 - 5, "eval_every_samples": None,
                          "eval_every_steps": 3, "checkpoint_every_steps": 7, "entropy_samples": 8},
}


def stop_at_the_first_checkpoint(s, folder, monkeypatch):
    """Run s into folder until its first checkpoint is written, then stop it as Ctrl-C would."""
    save = training._save_checkpoint

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        main.run(s, folder)
    monkeypatch.setattr(training, "_save_checkpoint", save)


def test_a_resumed_run_s_elapsed_and_wall_time_go_on_from_its_checkpoint(tmp_path, monkeypatch):
    # the attempt before the stop took (as its records say) until elapsed e; the resumed attempt's records and
    # wall_time count on from e, not from 0
    s = settings.build({**RESUMABLE["target_functions"], "progress": "off"})
    stop_at_the_first_checkpoint(s, tmp_path / "run", monkeypatch)

    def timed():
        return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]

    before = timed()
    # as if the first attempt had taken 1000 s: its records' elapsed are what the resumed one counts on from
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(json.dumps(dict(r, elapsed=r["elapsed"] + 1000)) + "\n"
                                                            for r in before))
    checkpoint = torch.load(tmp_path / "run" / training.CHECKPOINT, weights_only=False)
    checkpoint["history"] = [dict(r, elapsed=r["elapsed"] + 1000) for r in checkpoint["history"]]
    torch.save(checkpoint, tmp_path / "run" / training.CHECKPOINT)
    summary = main.run(s, tmp_path / "run")
    after = timed()
    assert all(r["elapsed"] >= 1000 for r in after[len(before):])
    assert [r["elapsed"] for r in after] == sorted(r["elapsed"] for r in after)
    assert summary["wall_time"] >= 1000


@pytest.mark.parametrize("name", RESUMABLE)
def test_a_run_stopped_at_a_checkpoint_and_resumed_writes_the_same_metrics(name, tmp_path, monkeypatch):
    s = settings.build({**RESUMABLE[name], "progress": "off"})
    main.run(s, tmp_path / "whole")
    stop_at_the_first_checkpoint(s, tmp_path / "resumed", monkeypatch)
    assert (tmp_path / "resumed" / training.CHECKPOINT).exists()
    stopped = len(records(tmp_path / "resumed"))
    main.run(s, tmp_path / "resumed")

    assert "resumed from checkpoint" in (tmp_path / "resumed" / "logs.log").read_text()
    whole = records(tmp_path / "whole")
    assert 1 < stopped < len(whole)
    assert records(tmp_path / "resumed") == whole
    assert summary_without_timings(tmp_path / "resumed") == summary_without_timings(tmp_path / "whole")
    assert not (tmp_path / "resumed" / training.CHECKPOINT).exists()


def test_a_run_written_before_a_setting_existed_resumes_as_it_began(tmp_path, monkeypatch, capsys):
    """A parity run made before fresh_inputs and dropout_noise existed (its config lacks them) drew each input
    uniformly and took torch's dropout masks: resumed by the current code (main.py --results-path, a sweep's
    worker, main.py --config on its config.py), it goes on so, not with today's defaults, and its metrics are
    an uninterrupted old-style run's (before, main.py refused it and the worker switched its stream)."""
    old_style = {**RESUMABLE["parity_cot_stream"], "n_samples": 16 * 15, "fresh_inputs": "independent",
                 "dropout": 0.1, "dropout_noise": "torch", "progress": "off"}
    s = settings.build(old_style)
    main.run(s, tmp_path / "whole")
    for how in ("results_path", "worker", "config_py"):
        run = tmp_path / how
        stop_at_the_first_checkpoint(s, run, monkeypatch)
        for name in ("config.json", "config.py"):  # as the code before these settings wrote them
            lines = (run / name).read_text()
            if name == "config.json":
                values = json.loads(lines)
                del values["fresh_inputs"], values["dropout_noise"]
                (run / name).write_text(json.dumps(values))
            else:
                (run / name).write_text("".join(line + "\n" for line in lines.splitlines()
                                                if not line.startswith(("fresh_inputs", "dropout_noise"))))
        checkpoint = torch.load(run / training.CHECKPOINT, weights_only=False)
        del checkpoint["source"]["drawn"]  # (nor did it count what its stream drew)
        torch.save(checkpoint, run / training.CHECKPOINT)
        if how == "results_path":
            assert main.main(["--results-path", str(run)]) == 0
        elif how == "worker":
            main.run_folder(run)
        else:
            assert main.main(["--config", str(run / "config.py"), "--results-path", str(run)]) == 0
        assert records(run) == records(tmp_path / "whole"), how
        assert "resumed from checkpoint" in (run / "logs.log").read_text()
    assert settings.as_written({"task": "parity_cot", "fresh_inputs": "distinct"}) == \
        {"task": "parity_cot", "fresh_inputs": "distinct", "dropout_noise": "torch"}
    assert settings.as_written({"task": "no_such_task"}) == {"task": "no_such_task"}


class _OnDevice:
    """A generator state as a checkpoint loaded onto a GPU holds it (torch's set_state takes CPU bytes only)."""

    def __init__(self, state):
        self.state = state

    def cpu(self):
        return self.state


def test_sources_resume_from_a_checkpoint_loaded_onto_another_device():
    import toy_tasks
    fixed = dataloaders.FixedSet({"x": torch.arange(10)}, 3, torch.Generator().manual_seed(0))
    fixed.next()
    state = fixed.state_dict()
    expected = fixed.next()[0]["x"]
    again = dataloaders.FixedSet({"x": torch.arange(10)}, 3, torch.Generator())
    again.load_state_dict({**state, "generator": _OnDevice(state["generator"])})
    assert torch.equal(again.next()[0]["x"], expected)
    stream = dataloaders.make_source(toy_tasks.sample, 4, 3, "cpu", budget=10)
    stream.next()
    state = stream.state_dict()
    expected = stream.next()[0]
    resumed = dataloaders.make_source(toy_tasks.sample, 4, 0, "cpu", budget=10)
    resumed.load_state_dict({**state, "generator": _OnDevice(state["generator"])})
    batch, size = resumed.next()
    assert size == 4 and all(torch.equal(batch[k], expected[k]) for k in batch)
    assert resumed.next()[1] == 2  # the budget's last 2
    old = dataloaders.make_source(toy_tasks.sample, 4, 0, "cpu", budget=10)
    old.load_state_dict({"generator": state["generator"]})  # written before budgets were exact
    assert [old.next()[1] for _ in range(3)] == [4, 4, 4]


def test_a_stream_checkpoint_of_another_device_kind_is_refused_in_one_line():
    """A CPU generator's state and a GPU's differ in kind: a run checkpointed on one and resumed on the other
    got a RuntimeError about state sizes; it is told where to resume it."""
    import toy_tasks
    from results import ResultsError
    stream = dataloaders.make_source(toy_tasks.sample, 4, 3, "cpu")
    state = {**stream.state_dict(), "device": "cuda"}
    with pytest.raises(ResultsError, match="drawn by a cuda generator, whose state cannot go on on cpu"):
        dataloaders.make_source(toy_tasks.sample, 4, 3, "cpu").load_state_dict(state)


def test_random_states_are_the_run_s_device_s_only(monkeypatch):
    """Every visible GPU's state was saved and restored: a run resumed where fewer GPUs are visible failed
    (IndexError), and a CPU run on a GPU machine started CUDA on every GPU at its first checkpoint."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    touched = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": touched.append(("get", device)) or
                        torch.zeros(16, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: touched.append("all"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": touched.append(("set", device,
                                                                                                  int(state[0]))))
    assert "cuda" not in training._rng_states(torch.device("cpu")) and touched == []
    states = training._rng_states(torch.device("cuda", 1))
    assert touched == [("get", torch.device("cuda", 1))] and "cuda" in states
    touched.clear()
    old = {"torch": torch.get_rng_state(), "cuda": [torch.full((16,), 7, dtype=torch.uint8),
                                                    torch.full((16,), 9, dtype=torch.uint8)]}
    training._set_rng_states(old, torch.device("cuda", 1))  # a checkpoint that kept every GPU's: the run's own
    training._set_rng_states(old, torch.device("cuda", 3))  # (one it does not have: left alone)
    training._set_rng_states(old, torch.device("cpu"))
    assert touched == [("set", torch.device("cuda", 1), 9)]


def test_plan_counts_epochs_of_a_fixed_set():
    s = settings.build({**TINY, "n_epochs": 4, "eval_every": 2, "checkpoint_every": 3})
    source = dataloaders.FixedSet({"x": torch.zeros(20)}, 6, None)  # 4 steps per epoch
    p = training.plan(s, source)
    assert (p.total_steps, p.eval_interval, p.checkpoint_interval) == (16, ("steps", 8), ("steps", 12))
    assert p.epoch(20 * 3) == 3 and p.epoch(30) == 1.5
    assert math.isclose(p.epoch(7), 0.35)


def test_an_evaluation_split_can_be_a_seeded_subsample_of_the_training_set():
    from tasks.base import subsample
    train = {"x": torch.arange(100) * 10, "y": torch.arange(100)}
    a = subsample(train, 30, torch.Generator().manual_seed(1))
    b = subsample(train, 30, torch.Generator().manual_seed(1))
    assert torch.equal(a["y"], b["y"]) and len(set(a["y"].tolist())) == 30
    assert torch.equal(a["x"], a["y"] * 10)  # rows stay whole
    assert subsample(train, 500, torch.Generator()) is train


def test_the_progress_bar_shows_a_run_s_values_and_a_stack_s_range_over_members():
    one = [{"step": 5, "train_loss": 0.25, "test_accuracy": 0.5, "lr": 0.1}]
    assert training._progress_postfix(one) == {"train_loss": "0.250", "test_accuracy": "0.500"}
    stack = one + [{"step": 5, "train_loss": 0.125, "test_accuracy": 0.5, "lr": 0.1}]
    assert training._progress_postfix(stack) == {"train_loss": "0.125-0.250", "test_accuracy": "0.500"}


def test_a_batch_larger_than_the_training_set_is_noted_in_the_log_and_the_summary(tmp_path):
    import main
    import settings as settings_module
    summary = main.run(settings_module.build(dict(task="group_arithmetic", n_epochs=1, batch_size=5000,
                                                  progress="off")), tmp_path / "run")
    log = (tmp_path / "run" / "logs.log").read_text()
    note = "batch_size = 5000 is more than the 159 training examples: every step takes all 159 (full batch)"
    assert f"note: {note}" in log and note in summary["notes"]


def test_runs_of_different_precisions_follow_each_other_in_one_process(tmp_path):
    # a sweep worker trains many runs in one process; Accelerate refused a second precision in it
    import main
    import settings as settings_module
    for i, precision in enumerate(("no", "bf16", "no")):
        summary = main.run(settings_module.build(dict(task="group_arithmetic", n_epochs=1, progress="off",
                                                      mixed_precision=precision)), tmp_path / str(i))
        assert summary["mixed_precision"] == precision


def test_a_stop_signal_during_an_evaluation_s_writes_acts_after_them():
    """metrics.jsonl and logs.log get an evaluation together or not at all: a kill between the two kept a record
    that the log lacked (seen once under load in test_kill_stops_a_run_like_ctrl_c_and_keeps_every_evaluation)."""
    import os
    import signal
    written = []
    with pytest.raises(KeyboardInterrupt):
        with training.signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # where Python would run the handler, were the signal not held
            written.append("record and log line")
    assert written == ["record and log line"]


def test_a_stop_between_an_evaluation_s_record_and_its_log_line_keeps_both(tmp_path, monkeypatch):
    """Run.record holds a stop signal: metrics.jsonl and logs.log list the same evaluations after it."""
    import os
    import re
    import signal

    import main
    import results
    calls, append = [], results.MetricsWriter.append

    def append_then_stop(self, record):
        append(self, record)
        calls.append(record)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # where the stop would act, between the record and its log line

    monkeypatch.setattr(results.MetricsWriter, "append", append_then_stop)
    with pytest.raises(KeyboardInterrupt):
        main.run(settings.build(dict(task="group_arithmetic", hidden_size=8, n_epochs=10, progress="off")),
                 tmp_path / "run")
    logged = [int(e) for e in re.findall(r"eval epoch (\d+) ", (tmp_path / "run" / "logs.log").read_text())]
    assert [r["epoch"] for r in results.RunDir(tmp_path / "run").read_metrics()] == logged == [0, 1, 2]


def test_a_stop_while_the_handlers_are_put_back_leaves_none_of_them_swapped(monkeypatch):
    """signal.signal runs a pending handler before it installs: a Ctrl-C landing as SIGTERM's handler is put back
    raised there and left SIGTERM's noting stand-in installed, swallowing every later kill."""
    import signal
    real, restores = signal.signal, []

    def spy(signum, handler):
        if signum == signal.SIGTERM and handler is before[signal.SIGTERM] and not restores:
            restores.append(signum)
            raise KeyboardInterrupt  # (the SIGINT handler, put back a moment before, acting now)
        return real(signum, handler)

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(signal, "signal", spy)
    with pytest.raises(KeyboardInterrupt):
        with training.signals_held():
            pass
    monkeypatch.setattr(signal, "signal", real)
    assert restores and {s: signal.getsignal(s) for s in before} == before
