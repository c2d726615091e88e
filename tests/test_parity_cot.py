"""Sparse parity with and without CoT: the spec's example sequence and labels, the original's secret sets,
disjoint training and validation inputs, exact match, the attention entropy, the sample complexity, the
settings' refusals, and tiny runs end to end (both regimes, bf16).

Expected values come from the spec (reference/parity_cot.md) or from definitions written here, not from
the code under test.
"""
import json
import math

import pytest
import torch

import main
import models
import settings
from tasks import parity_cot as pc


class _Log:
    def info(self, *args):
        pass


def make(**values):
    return settings.build({"task": "parity_cot", **values})


TINY = dict(n_bits=8, k=3, n_embd=16, n_layer=1, n_head=2, batch_size=32, n_samples=32 * 6,
            eval_every_samples=None, eval_every_steps=3, n_valid=64, progress="off", entropy_samples=16)


# ---------------------------------------------------------------- sequences and labels

def test_spec_example_n20_k6_sequence_and_labels():
    secret = pc.original_secret(20, 6)
    assert secret == [1, 2, 11, 12, 17, 18]
    bits = torch.zeros(1, 20, dtype=torch.uint8)
    for position, bit in zip(secret, (0, 1, 1, 1, 1, 0)):  # the spec's secret bits
        bits[0, position] = bit
    bits[0, 0] = bits[0, 5] = bits[0, 19] = 1  # non-secret bits change nothing
    ids = pc.sequences(bits, secret, cot=True)
    assert ids.shape == (1, 27)
    assert ids[0, :20].tolist() == bits[0].tolist()
    assert ids[0, 20:26].tolist() == [0, 0, 1, 0, 1, 0]  # the spec's CoT
    assert ids[0, 26].item() == 0  # y
    labels = pc.labels_of(ids, 20)
    assert labels[0, :20].tolist() == [-100] * 20
    assert labels[0, 20:].tolist() == [0, 0, 1, 0, 1, 0, 0]
    plain = pc.sequences(bits, secret, cot=False)
    assert plain.shape == (1, 21) and plain[0, 20].item() == 0
    assert pc.labels_of(plain, 20)[0].tolist() == [-100] * 20 + [0]


def test_sequences_against_brute_force_parity():
    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (200, 12), generator=gen, dtype=torch.uint8)
    secret = [0, 4, 7, 11]
    ids = pc.sequences(bits, secret, cot=True)
    for row, seq in zip(bits.tolist(), ids.tolist()):
        running = 0
        for j, p in enumerate(secret):
            assert seq[12 + j] == running
            running ^= row[p]
        assert seq[-1] == running


def test_bits_are_least_significant_first():
    assert pc.to_bits(torch.tensor([6, 1]), 4).tolist() == [[0, 1, 1, 0], [1, 0, 0, 0]]


# ---------------------------------------------------------------- secret sets

@pytest.mark.parametrize("n, k, expected", [
    (30, 1, [2]), (30, 2, [2, 28]), (30, 3, [2, 13, 28]), (30, 4, [2, 10, 13, 28]),
    (20, 3, [1, 11, 18]), (20, 6, [1, 2, 11, 12, 17, 18]),
    (20, 12, [2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 15, 17]),
    (40, 20, [1, 2, 3, 7, 12, 13, 14, 16, 18, 19, 22, 24, 25, 26, 27, 29, 33, 34, 36, 38]),
])
def test_original_secret_sets(n, k, expected):
    assert pc.original_secret(n, k) == expected
    assert make(n_bits=n, k=k).secret_set() == expected


def test_secret_given_or_by_seed_and_recorded():
    assert make(secret=[5, 1, 3], k=3).secret_set() == [1, 3, 5]
    by_seed = [make(secret_rule="seed", seed=s).secret_set() for s in (0, 0, 1)]
    assert by_seed[0] == by_seed[1] != by_seed[2] and len(by_seed[0]) == 6
    task = pc.Task(make(**TINY, secret=[0, 2, 5]), _Log())
    assert task.build_data().facts["secret"] == [0, 2, 5]


# ---------------------------------------------------------------- disjointness, regimes

@pytest.mark.parametrize("n_bits, n_train", [(12, 1500), (30, 3000), (70, 500)])
def test_train_and_valid_inputs_distinct_and_disjoint(n_bits, n_train):
    task = pc.Task(make(n_bits=n_bits, k=3, n_train=n_train, n_valid=512, n_embd=16), _Log())
    data = task.build_data()
    train, valid = data.train["ids"][:, :n_bits], data.splits["valid"]["ids"][:, :n_bits]
    rows = {tuple(r) for r in train.tolist()}
    assert len(rows) == n_train
    assert len({tuple(r) for r in valid.tolist()}) == 512
    assert not rows & {tuple(r) for r in valid.tolist()}
    assert data.facts["train_valid_overlap"] == 0
    assert data.splits["train"]["ids"].shape == (min(n_train, 2048), task.settings.length)


@pytest.mark.parametrize("fresh_inputs", ["distinct", "independent"])
def test_stream_never_draws_a_validation_input(fresh_inputs):
    s = make(n_bits=6, k=2, n_valid=32, n_embd=16, fresh_inputs=fresh_inputs)  # 64 inputs, half validation
    data = pc.Task(s, _Log()).build_data()
    assert s.training_source() == "stream" and callable(data.train)
    valid = {tuple(r) for r in data.splits["valid"]["ids"][:, :6].tolist()}
    batch = data.train(4000, torch.Generator().manual_seed(3))["ids"]
    drawn = [tuple(r) for r in batch[:, :6].tolist()]
    assert not set(drawn) & valid and len(set(drawn)) == 32
    if fresh_inputs == "distinct":  # every pass over the 32 training inputs takes each once, in a new order
        passes = [drawn[i:i + 32] for i in range(0, 128, 32)]
        assert all(len(set(p)) == 32 for p in passes) and len({tuple(p) for p in passes}) == 4
    # the same settings and generator seed draw the same batches
    twice = [pc.Task(s, _Log()).build_data().train(50, torch.Generator().manual_seed(3))["ids"] for _ in range(2)]
    assert torch.equal(*twice)


@pytest.mark.parametrize("n_bits", [7, 8, 10, 13])
def test_the_distinct_stream_s_order_is_a_permutation_of_all_inputs_pass_after_pass(n_bits):
    keys = torch.randint(0, 2 ** 31, (pc.FEISTEL_ROUNDS,), generator=torch.Generator().manual_seed(n_bits)).tolist()
    size = 2 ** n_bits
    order = pc.permuted(torch.arange(3 * size), keys, n_bits)
    passes = order.view(3, size)
    assert all(torch.equal(p.sort().values, torch.arange(size)) for p in passes)
    assert not torch.equal(passes[0], passes[1]) and not torch.equal(passes[0], torch.arange(size))


def test_the_distinct_stream_is_balanced_and_never_repeats_an_input():
    """What the parity task needs of a pseudo-random order: 10^5 draws at n = 21 (odd: the permutation walks
    on 22 bits) are all distinct, every bit and the parity of several subsets (the secret among them) is
    1 half of the time within a few standard errors (0.0016), and successive inputs are uncorrelated."""
    s = make(n_bits=21, k=6, n_embd=16)
    sampler = pc.Task(s, _Log()).build_data().train
    generator = torch.Generator().manual_seed(0)
    bits = torch.cat([sampler(10_000, generator)["ids"][:, :21] for _ in range(10)]).long()
    assert len(torch.unique(pc.keys(bits))) == len(bits)
    assert (bits.float().mean(0) - 0.5).abs().max() < 0.01
    subsets = [pc.original_secret(21, 6), [0, 1], [19, 20], [0, 20], list(range(21)), [3, 4, 5, 6, 7, 8, 9]]
    for subset in subsets:
        assert abs(float((bits[:, subset].sum(1) % 2).float().mean()) - 0.5) < 0.01, subset
    assert abs(float((bits[1:] == bits[:-1]).float().mean()) - 0.5) < 0.01


def test_the_distinct_stream_resumes_where_its_state_says():
    s = make(n_bits=12, k=3, n_embd=16)
    first = pc.Task(s, _Log()).build_data().train
    generator = torch.Generator().manual_seed(1)
    first(300, generator)
    state, generator_state = first.state_dict(), generator.get_state()
    expected = first(300, generator)["ids"]
    second = pc.Task(s, _Log()).build_data().train
    second.load_state_dict(state)
    generator.set_state(generator_state)
    assert torch.equal(second(300, generator)["ids"], expected)


def test_stream_facts_say_how_inputs_are_drawn():
    def fact(**values):
        return pc.Task(make(**values), _Log()).build_data().facts["train"]
    assert "distinct inputs" in fact(n_bits=12, k=3, n_embd=16, n_samples=1000)
    assert "exceeds the 2,048 inputs" in fact(n_bits=12, k=3, n_embd=16, n_samples=5000)
    assert "repeats possible" in fact(n_bits=12, k=3, n_embd=16, fresh_inputs="independent")
    assert "n_bits = 63 > 62" in fact(n_bits=63, k=3, n_embd=16, n_samples=1000)
    assert any("fresh_inputs" in note for note in make(n_train=100, fresh_inputs="independent").notes())


def test_settings_refusals():
    for values, phrase in [(dict(k=30), "cannot exceed"), (dict(secret=[1, 2]), "has 2 positions"),
                           (dict(secret=[1, 1, 2, 3, 4, 5]), "repeats"), (dict(secret=[0, 1, 2, 3, 4, 25]), "outside"),
                           (dict(n_bits=10, n_train=2000), "do not exist"), (dict(n_epochs=3), "no epochs"),
                           (dict(n_positions=10), "shorter"), (dict(n_embd=30, n_head=4), "divisible"),
                           (dict(batch_size=0), "batch_size = 0 takes the whole training set"),
                           (dict(n_bits=8), r"n_valid = 2048 distinct inputs do not exist .* lower n_valid")]:
        with pytest.raises(settings.SettingsError, match=phrase):
            make(**values)
    assert make(n_train=100, n_epochs=3, n_samples=None).training_source() == "fixed"


def test_a_model_cast_to_bf16_gets_no_autocast_on_a_gpu(monkeypatch):
    """The original casts the whole model to bf16 and runs no autocast (its layer norms and softmax compute
    in bf16); mixed_precision = 'auto' on a GPU is bf16 autocast only for an fp32 model. Other programmes keep
    'auto' = bf16 (the target-function original autocasts its bf16 decoders)."""
    import training
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert training.autocast_precision(make(model_dtype="bfloat16")) == (False, "no")
    assert training.autocast_precision(make()) == (False, "bf16")
    assert training.autocast_precision(make(model_dtype="bfloat16", mixed_precision="bf16")) == (False, "bf16")
    other = settings.build({"task": "target_functions", "model_dtype": "bfloat16"})
    assert training.autocast_precision(other) == (False, "bf16")


# ---------------------------------------------------------------- metrics

def test_exact_match_one_wrong_position_makes_the_sample_wrong():
    target = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]])
    predicted = target.clone()
    predicted[1, 2] = 1  # one wrong CoT token
    predicted[2, 3] = 0  # one wrong answer
    assert pc.exact_match(predicted, target).tolist() == [True, False, False]


class Oracle(torch.nn.Module):
    """Logits that predict the true next token, except at the chosen (sample, position) pairs."""

    def __init__(self, wrong=()):
        super().__init__()
        self.wrong = set(wrong)

    def forward(self, ids, attention_mask=None, output_attentions=False, positions=None):
        nxt = torch.cat([ids[:, 1:], ids[:, -1:]], dim=1)
        for b, t in self.wrong:
            nxt[b, t - 1] = 1 - nxt[b, t - 1]
        logits = F_one_hot(nxt) * 10.0
        return logits if positions is None else logits[:, positions]  # CausalLM's positions=slice(...)


def F_one_hot(x):
    return torch.nn.functional.one_hot(x, 2).float()


def test_evaluate_batch_exact_and_per_position():
    s = make(**TINY)
    task = pc.Task(s, _Log())
    ids = task.build_data().splits["valid"]["ids"][:10]
    out = task.evaluate_batch(Oracle(wrong=[(0, 8), (3, 11), (3, 9)]), {"ids": ids})  # n=8: positions 8..11
    assert out["accuracy"][0].item() == 8 and out["accuracy"][1] == 10
    assert [out[f"{p}_acc"][0].item() for p in ("cot1", "cot2", "cot3", "answer")] == [9, 9, 10, 9]
    assert out["loss"][1] == 40


def _tiny_model_and_ids(**values):
    task = pc.Task(make(**{**TINY, **values}), _Log())
    data = task.build_data()
    torch.manual_seed(0)
    return task, task.build_model(data), data.splits["valid"]["ids"][:24]


@pytest.mark.parametrize("noise", ["torch", "counter"])
def test_training_loss_on_labelled_positions_is_the_full_lm_loss(noise):
    """The loss computed on the labelled positions alone is the next-token loss of the whole sequence with
    the inputs' labels -100 (the same terms; value and gradient equal to float summation order), with the
    same dropout masks: torch's (same seed, the random stream left at the same place) or the counter
    noise of the same training call (which draws nothing from torch's generator)."""
    task, model, ids = _tiny_model_and_ids(dropout_noise=noise)
    model.train()
    params = list(model.parameters())
    torch.manual_seed(3)
    before = torch.get_rng_state()
    ours = task.training_loss(model, {"ids": ids})
    ours_grads, after = torch.autograd.grad(ours, params), torch.get_rng_state()
    assert torch.equal(before, after) == (noise == "counter")
    torch.manual_seed(3)
    if noise == "counter":
        assert model.dropout_calls.item() == 1
        model.dropout_calls.zero_()  # the same call's masks
    full = models.lm_loss(model(ids.long()), pc.labels_of(ids, 8))
    full_grads = torch.autograd.grad(full, params)
    assert torch.equal(torch.get_rng_state(), after)
    torch.testing.assert_close(ours, full, rtol=1e-6, atol=0)
    for a, b in zip(ours_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # by hand: the mean over the 4 labelled positions (n = 8, k = 3: 3 CoT tokens and y) of every sample
    model.eval()
    logits = model(ids.long())[:, 7:-1]
    by_hand = -torch.log_softmax(logits, -1).gather(-1, ids[:, 8:].long().unsqueeze(-1)).mean()
    torch.testing.assert_close(task.training_loss(model, {"ids": ids}), by_hand)


@pytest.mark.parametrize("piece", [512, 5])
def test_evaluation_on_labelled_positions_equals_the_full_forward(piece, monkeypatch):
    """evaluate_batch (the model computes the labelled predictions only, in pieces of EVAL_PIECE
    sequences) gives exactly the metrics of the full forward's logits at those positions."""
    monkeypatch.setattr(pc, "EVAL_PIECE", piece)
    task, model, ids = _tiny_model_and_ids()
    model.eval()
    with torch.inference_mode():
        out = task.evaluate_batch(model, {"ids": ids})
        logits = model(ids.long())[:, 7:-1]
    target = ids[:, 8:].long()
    right = logits.argmax(-1) == target
    assert out["loss"][0].item() == torch.nn.functional.cross_entropy(
        logits.reshape(-1, 2), target.reshape(-1), reduction="sum").item()
    assert out["loss"][1] == 24 * 4
    assert out["accuracy"][0].item() == right.all(1).sum().item() and out["accuracy"][1] == 24
    for j, name in enumerate(("cot1", "cot2", "cot3", "answer")):
        assert out[f"{name}_acc"][0].item() == right[:, j].sum().item()


def test_entropy_uniform_rows_one_and_one_hot_rows_zero():
    T = 7
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1).unsqueeze(1)
    one_hot = torch.zeros(T, T)
    one_hot[torch.arange(T), torch.arange(T) // 2] = 1.0
    attention = torch.stack([uniform, one_hot]).unsqueeze(0).repeat(3, 1, 1, 1)  # [3, 2 heads, T, T]
    assert pc.normalised_entropy(attention).tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    # the minimum over query positions: one sharp row among uniform ones gives that row's value
    mixed = uniform.clone()
    mixed[4] = 0
    mixed[4, :2] = 0.5
    assert pc.normalised_entropy(mixed[None, None]).item() == pytest.approx(math.log(2) / math.log(5))


def test_sample_complexity_from_a_history():
    history = [{"samples": 0, "valid_accuracy": 0.0}, {"samples": 2048, "valid_accuracy": 0.996},
               {"samples": 4096, "valid_accuracy": 1.0}, {"samples": 6144, "valid_accuracy": 0.99}]
    assert pc.sample_complexity(history) == 4096
    assert pc.sample_complexity(history, 0.995) == 2048
    assert pc.sample_complexity(history[:2]) is None


def test_fused_gelu_is_gpt2s_gelu():
    from transformers.activations import NewGELUActivation
    model = pc.Task(make(**TINY), _Log()).build_model(None)
    acts = [m.act for m in model.modules() if hasattr(m, "act")]
    assert acts and all(isinstance(a, torch.nn.GELU) for a in acts)
    x = torch.randn(1000) * 4
    assert torch.allclose(acts[0](x), NewGELUActivation()(x), atol=1e-6)


# ---------------------------------------------------------------- runs end to end

def test_tiny_fixed_set_run_writes_metrics_and_summary(tmp_path):
    s = make(**TINY, n_train=96, train_eval_size=32, cot=True)
    summary = main.run(s, tmp_path / "run")
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 3, 6]
    for key in ("valid_accuracy", "valid_loss", "valid_cot1_acc", "valid_answer_acc", "train_accuracy",
                "entropy_l0_h0", "entropy_l0_h1"):
        assert key in records[-1]
    assert 0.0 <= records[-1]["entropy_l0_h1"] <= 1.0
    assert summary["secret"] == pc.original_secret(8, 3)
    assert summary["sample_complexity_text"] == (str(summary["sample_complexity"])
                                                 if summary["learned"] else f">= {summary['samples']}")
    assert summary["data_facts"]["train_valid_overlap"] == 0


def test_tiny_stream_run_learns_k1_and_bf16_options_run(tmp_path):
    # k = 1 without CoT: y copies one bit, learned within a few hundred samples by a tiny model
    s = make(**dict(TINY, k=1, cot=False, lr=3e-2, n_samples=32 * 30, eval_every_steps=10, dropout=0.0))
    summary = main.run(s, tmp_path / "stream")
    assert summary["learned"] and summary["sample_complexity"] <= 32 * 30
    from accelerate.state import AcceleratorState
    for extra in (dict(model_dtype="bfloat16"), dict(mixed_precision="bf16")):
        try:
            out = main.run(make(**TINY, **extra), tmp_path / next(iter(extra)))
        finally:  # Accelerate keeps its precision per process; the next run may ask for another
            AcceleratorState._reset_state(reset_partial_state=True)
        assert math.isfinite(out["final"]["valid_loss"])
        assert out["mixed_precision"] == extra.get("mixed_precision", "no")


def _fake_run(folder, config, sample_complexity, budget=40960, accuracy=1.0):
    """A finished run's files, as the loop writes them (config, status, metrics, summary)."""
    folder.mkdir(parents=True)
    base = settings.as_dict(make(**config))
    (folder / "config.json").write_text(json.dumps(base))
    (folder / "status.json").write_text(json.dumps({"state": "done"}))
    records = [{"step": i, "samples": 2048 * i, "valid_accuracy": min(1.0, i / 10), "entropy_l0_h0": 1 - i / 20}
               for i in range(21)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "summary.json").write_text(json.dumps(
        {"state": "done", "final": {"valid_accuracy": accuracy}, "sample_complexity": sample_complexity,
         "budget_samples": budget}))


def test_plots_from_a_sweep_folder(tmp_path):
    import plot as plotting
    i = 0
    for k in (1, 3):
        for cot in (True, False):
            for n_layer, n_head in ((1, 1), (1, 2), (2, 1), (2, 2)) if cot else ((1, 1),):
                never = not cot and k == 3
                _fake_run(tmp_path / "sweep" / str(i), dict(k=k, cot=cot, n_layer=n_layer, n_head=n_head, n_embd=16),
                          None if never else 2048 * k * (1 if cot else 4 ** k), accuracy=0.5 if never else 1.0)
                i += 1
    paths = pc.plot(tmp_path / "sweep", tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["sweep_accuracy_curves.png", "sweep_entropy.png", "sweep_heatmap.png",
                     "sweep_sample_complexity.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert plotting.task_of(tmp_path / "sweep") == "parity_cot"


def test_figure_points_take_the_best_learning_rate_as_the_originals_plots_do():
    """Figures 1/2/3 keep min(...) of the sample complexity over lr, Figure 9 max(...) of the accuracy over lr
    (the original's Figures/*.py); our sweeps vary lr with several seeds: the mean over seeds, then the best lr."""
    def s(complexity, budget=10 ** 7):
        return {"sample_complexity": complexity, "budget_samples": budget}
    assert pc._best_over_lr({6e-5: [s(2e5)], 1e-4: [s(5e4)]}) == pytest.approx(5e4)
    assert pc._best_over_lr({6e-5: [s(None)], 8e-5: [s(3e5)], 1e-4: [s(1e5)]}) == pytest.approx(1e5)
    # seeds of one rate: their geometric mean; a rate where a seed never learned is no measurement
    assert pc._best_over_lr({6e-5: [s(1e4), s(1e6)], 1e-4: [s(2e5), s(None)]}) == pytest.approx(1e5)
    # no rate learned with every seed: a lower bound, the least of the rates' bounds
    assert pc._best_over_lr({6e-5: [s(None, 10 ** 7)], 1e-4: [s(3e6), s(None, 10 ** 6)]}) == 3e6
    assert pc._best_accuracy_over_lr({6e-5: [0.5, 0.7], 8e-5: [1.0, 0.9], 1e-4: [0.5]}) == pytest.approx(0.95)


def test_the_sample_complexity_axis_names_the_runs_threshold():
    """Figure 3's runs count samples to 0.995, not to exact match 1.0 (the axis said 1.0 for every run)."""
    assert pc._complexity_label([{"config": {"threshold": 0.995}}]) == "samples to exact match 0.995"
    assert pc._complexity_label([{"config": {}}, {"config": {"threshold": 1.0}}]) == "samples to exact match 1"


def test_the_sample_complexity_lines_split_by_n_and_threshold_where_a_sweep_varies_them(tmp_path, monkeypatch):
    """One line pooled runs of different n (or thresholds) into one geometric mean: different problems."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import plot as plotting
    i = 0
    for n_bits in (8, 10):
        for k in (1, 2):
            _fake_run(tmp_path / "sweep" / str(i), dict(n_bits=n_bits, k=k, cot=True, n_layer=1, n_head=1, n_embd=16,
                                                          n_valid=64),
                      2048 * k * (n_bits - 7))
            i += 1
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    assert pc._complexity_plot(plotting.load_runs(tmp_path / "sweep"), tmp_path / "c.png", plt)
    lines = {line.get_label(): [round(y) for y in line.get_ydata()] for line in figures[0].axes[0].get_lines()}
    assert lines == {"CoT, 1L1H, d=16, n=8": [2048, 4096], "CoT, 1L1H, d=16, n=10": [6144, 12288]}


def test_the_sample_complexity_lines_keep_the_two_streams_and_old_runs_apart(tmp_path, monkeypatch):
    """A sweep over fresh_inputs (or old runs, whose config lacks it: the earlier stream, settings.as_written,
    beside new ones) drew one line through both streams' runs; each stream has its own line now."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import plot as plotting
    i = 0
    for stream, complexity in (("distinct", 16384), ("independent", 65536), (None, 65536)):
        for k in (1, 2):
            _fake_run(tmp_path / "sweep" / str(i), dict(n_bits=8, k=k, cot=True, n_layer=1, n_head=1, n_embd=16,
                                                        n_valid=64, fresh_inputs=stream or "distinct"), complexity)
            if stream is None:  # written before fresh_inputs and dropout_noise existed
                config = json.loads((tmp_path / "sweep" / str(i) / "config.json").read_text())
                del config["fresh_inputs"], config["dropout_noise"]
                (tmp_path / "sweep" / str(i) / "config.json").write_text(json.dumps(config))
            i += 1
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    assert pc._complexity_plot(plotting.load_runs(tmp_path / "sweep"), tmp_path / "c.png", plt)
    lines = {line.get_label(): [round(y) for y in line.get_ydata()] for line in figures[0].axes[0].get_lines()}
    assert lines == {"CoT, 1L1H, d=16, fresh_inputs distinct, dropout_noise counter": [16384, 16384],
                     "CoT, 1L1H, d=16, fresh_inputs independent, dropout_noise counter": [65536, 65536],
                     "CoT, 1L1H, d=16, fresh_inputs independent, dropout_noise torch": [65536, 65536]}
    import report
    assert report.varied_names(tmp_path / "sweep") == ["k", "fresh_inputs", "dropout_noise"]
    # the accuracy curves and the entropy panels say which stream a run drew (labels were the same twice)
    figures.clear()
    assert pc._curves_plot(plotting.load_runs(tmp_path / "sweep"), tmp_path / "a.png", plt)
    labels = [line.get_label() for line in figures[0].axes[0].get_lines() if not line.get_label().startswith("_")]
    assert len(labels) == len(set(labels)) == 6 and sum("independent" in label for label in labels) == 4


def test_report_shows_the_best_validation_accuracy_and_no_notes_a_programme_has_not(tmp_path, monkeypatch):
    """report.py copied best_test* only: parity's best_valid_accuracy (and its step) never showed; and under
    a Python without numpy it said parity's notes needed it, though parity has none."""
    import importlib

    import report
    _fake_run(tmp_path / "sweep" / "0", dict(n_bits=8, k=1, cot=True, n_embd=16, n_valid=64), 4096)
    summary = json.loads((tmp_path / "sweep" / "0" / "summary.json").read_text())
    summary.update(best_valid_accuracy=0.75, best_valid_accuracy_step=12)
    (tmp_path / "sweep" / "0" / "summary.json").write_text(json.dumps(summary))
    row = report.rows(tmp_path / "sweep")[0]
    assert (row["best_valid_accuracy"], row["best_valid_accuracy_step"]) == (0.75, 12)

    def no_module(name, *args):
        raise ImportError(f"No module named {name!r}", name="numpy")
    monkeypatch.setattr(importlib, "import_module", no_module)
    assert report.task_notes(tmp_path / "sweep") == []
