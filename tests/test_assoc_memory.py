"""Associative memory: the n-gram tables, vectorised sampling, the models (heads, compress maps, parameter
counts), the loss floor, the learning-rate ramp, the metrics, and one run end to end.

Expected values come from hand computation or from independent definitions written here (a per-head
loop, explicit indexing of the tables), never from the code under test.
"""
import json
import math

import pytest
import torch

import attention_only
import main
import models
import settings
from conftest import write_settings
from tasks import assoc_memory as am


class _Log:
    def info(self, *args):
        pass


def make(**values):
    return settings.build({"task": "assoc_memory", **values})


def loss_of(task, model, batch):
    with torch.no_grad():
        return float(task.training_loss(model, batch))


def task_and_data(**values):
    task = am.Task(make(**values), _Log())
    return task, task.build_data()


class Predictor(torch.nn.Module):
    """A model that answers from a table of logits indexed by the context (t0, t1)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        return self.logits[tokens[:, 0], tokens[:, 1]] + 0 * self.dummy


def one_hot_logits(table, shift=0, scale=60.0):
    """Logits putting all mass on the most likely next token (shifted by `shift` to be always wrong)."""
    N = table.shape[-1]
    best = (table.argmax(-1) + shift) % N
    return scale * torch.nn.functional.one_hot(best, N).float()


# ---------------------------------------------------------------- tables and sampling

@pytest.mark.parametrize("alphas, nb_tokens", [([1.0, 1.0, 1.0], [7, 7, 1]),
                                                ([0.5, 0.8, 0.3], [7, 4, 3]),
                                                ([2.0, 1.0], [3, 7])])
def test_tables_are_distributions_with_the_given_support_and_geometric_weights(alphas, nb_tokens):
    N = 7
    tables = am.power_unif_law(alphas, nb_tokens, N, torch.Generator().manual_seed(1))
    assert [tuple(t.shape) for t in tables] == [(N,) * (k + 1) for k in range(len(alphas))]
    for alpha, support, table in zip(alphas, nb_tokens, tables):
        rows = table.reshape(-1, N)
        assert torch.allclose(rows.sum(1), torch.ones(len(rows), dtype=rows.dtype), atol=1e-12)
        assert ((rows > 0).sum(1) == support).all()
        weights = [alpha ** r for r in range(support)]
        expected = sorted((w / sum(weights) for w in weights), reverse=True)
        for row in rows:
            assert row[row > 0].sort(descending=True).values.tolist() == pytest.approx(expected, abs=1e-12)


def test_permutations_differ_per_context_and_follow_the_seed():
    a = am.power_unif_law([0.5, 0.5, 1.0], [5, 5, 1], 5, torch.Generator().manual_seed(3))
    b = am.power_unif_law([0.5, 0.5, 1.0], [5, 5, 1], 5, torch.Generator().manual_seed(3))
    c = am.power_unif_law([0.5, 0.5, 1.0], [5, 5, 1], 5, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert len(set(a[1].argmax(-1).tolist())) > 1           # the most likely t1 depends on t0
    assert len(set(a[2].argmax(-1).flatten().tolist())) > 1  # f(t0, t1) is not constant


def test_experiments_setting_has_n_squared_associations():
    task, data = task_and_data(N=50, d=10, H=11)
    N = 50
    t0, t1, t2 = task.tables
    assert torch.allclose(t0, torch.full((N,), 1 / N, dtype=t0.dtype))
    assert torch.allclose(t1, torch.full((N, N), 1 / N, dtype=t1.dtype))
    assert ((t2 == 1).sum(-1) == 1).all() and ((t2 == 0).sum(-1) == N - 1).all()
    contexts = data.splits["contexts"]["tokens"]
    assert data.size("contexts") == N * N == data.facts["contexts"] == 2500
    assert len({(a, b) for a, b, _ in contexts.tolist()}) == 2500
    assert all(t2[a, b, c] == 1 for a, b, c in contexts.tolist())  # the target is f(t0, t1)
    assert torch.allclose(data.splits["contexts"]["weight"], torch.ones(2500))
    assert data.size("train") == 256 * 64
    train = data.splits["train"]["tokens"]
    assert (t2[train[:, 0], train[:, 1], train[:, 2]] == 1).all()
    assert data.facts["optimal_accuracy"] == 1.0
    # 1/50 + (49/50) * (11 * 10 + 10) / 2500, by hand
    assert task.bound == pytest.approx(0.06704, abs=1e-12)


def test_vectorised_sampling_matches_the_tables():
    N, count = 4, 200_000
    tables = am.power_unif_law([0.6, 0.8, 0.5], [4, 3, 2], N, torch.Generator().manual_seed(0))
    joint = tables[0][:, None, None] * tables[1][:, :, None] * tables[2]
    for chunk in (1 << 22, 4 * 1000):  # one block, and 1000 samples per block
        seq = am.sample_sequences(tables, count, torch.Generator().manual_seed(5), chunk_entries=chunk)
        assert seq.shape == (count, 3) and seq.dtype == torch.long
        observed = torch.zeros(N, N, N, dtype=torch.float64)
        observed.index_put_((seq[:, 0], seq[:, 1], seq[:, 2]), torch.ones(count, dtype=torch.float64),
                            accumulate=True)
        assert observed[joint == 0].sum() == 0  # nothing outside the support
        expected = count * joint[joint > 0]
        chi2 = float(((observed[joint > 0] - expected) ** 2 / expected).sum())
        assert (joint > 0).sum() == 24
        assert chi2 < 49.7  # chi-square, 23 degrees of freedom, p = 0.001


def test_data_follows_seed_and_data_seed():
    tokens = lambda **v: task_and_data(N=6, d=4, H=1, num_batch=4, **v)[1].splits["train"]["tokens"]  # noqa: E731
    assert torch.equal(tokens(seed=1), tokens(seed=1))
    assert not torch.equal(tokens(seed=1), tokens(seed=2))
    assert torch.equal(tokens(seed=1, data_seed=7), tokens(seed=2, data_seed=7))


def test_original_sampler_draws_the_original_notebooks_table_and_training_set():
    # Golden values printed by the original code itself (utils.power_unif_law and generate_data of
    # leodana2000/Transformer_Attentional_Memory, run unmodified after torch.manual_seed(2222), N = 50,
    # batch 256 x 64 batches, context_window 3): its table f(t0, t1) and its 16,384 training sequences.
    task, data = task_and_data(N=50, sampler="original", data_seed=2222, seed=7)
    tokens = data.splits["train"]["tokens"]
    assert tokens.shape == (16384, 3)
    assert tokens[:3].tolist() == [[13, 27, 3], [47, 20, 9], [8, 37, 14]] and tokens[-1].tolist() == [36, 9, 38]
    weights = torch.arange(16384 * 3).view(16384, 3) % 7 + 1
    assert int((tokens * weights).sum()) == 4798123
    f = task.tables[2].argmax(-1)
    assert f[:2, :5].tolist() == [[44, 47, 25, 44, 9], [21, 0, 25, 37, 31]]
    assert int((f * (torch.arange(2500).view(50, 50) % 11 + 1)).sum()) == 370345
    assert torch.equal(tokens[:, 2], f[tokens[:, 0], tokens[:, 1]])  # the table labels its own set
    # the seed of the run does not move the data; the vectorised sampler draws another table
    assert torch.equal(task_and_data(N=50, sampler="original", data_seed=2222, seed=8)[1].splits["train"]["tokens"],
                       tokens)
    assert not torch.equal(task_and_data(N=50, data_seed=2222)[1].splits["train"]["tokens"], tokens)


# ---------------------------------------------------------------- models

def test_aot_with_d_equal_d_h_has_no_compress_map_and_the_papers_parameter_count():
    # 4 d^2 H + d (2N + 1) counts N x d embedding, N x d unembedding, 4 d^2 per head and ONE positional
    # row of d: it holds for a positional table of a single row, i.e. a bigram read from one token.
    d, H, N = 8, 3, 20
    model = models.build(make(N=N, d=d, H=H, alphas=[1.0, 1.0], context_window=1).model_spec())
    assert model.compress is None and model.decompress is None
    assert not any("compress" in name for name, _ in model.named_parameters())
    assert sum(p.numel() for p in model.parameters()) == 4 * d * d * H + d * (2 * N + 1) == 1096
    # the original's trigram layout has context_window = 3 positional rows: two more rows of d
    model = models.build(make(N=N, d=d, H=H).model_spec())
    assert sum(p.numel() for p in model.parameters()) == 4 * d * d * H + d * (2 * N + 3)


def test_compress_maps_are_shared_and_counted_once():
    N, d, d_h, H, layers = 20, 8, 4, 3, 2
    model = models.build(make(N=N, d=d, d_h=d_h, H=H, nb_layers=layers).model_spec())
    assert tuple(model.compress.weight.shape) == (d_h, d) and tuple(model.decompress.weight.shape) == (d, d_h)
    assert sum("compress" in name for name, _ in model.named_parameters()) == 2
    expected = N * d + 3 * d_h + layers * H * 4 * d_h * d_h + 2 * d * d_h + d * N
    assert sum(p.numel() for p in model.parameters()) == expected


def test_transformer_has_one_gelu_mlp_per_layer():
    N, d, W = 20, 8, 12
    model = models.build(make(N=N, d=d, H=1, W=W, model="transformer", nb_layers=2).model_spec())
    mlp = model.mlp[0]
    assert isinstance(mlp[1], torch.nn.GELU)
    assert mlp[0].bias is not None and mlp[2].bias is None
    expected = N * d + 3 * d + 2 * (4 * d * d + d * W + W + W * d) + d * N
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("d, d_h, T, layers", [(6, 6, 2, 1), (6, 4, 3, 2), (5, 7, 4, 3)])
def test_batched_heads_equal_a_loop_over_single_head_attentions(d, d_h, T, layers):
    torch.manual_seed(0)
    H = 3
    model = attention_only.MemoryTransformer(9, d, d_h, H, nb_layers=layers, context_window=T)
    x = torch.randint(0, 9, (5, T))

    def reference(x):
        resid = model.embed(x)
        for attn in model.attn:
            a = (resid if model.compress is None else resid @ model.compress.weight.T) + model.pos[:T]
            total = 0
            for h in range(H):
                q, k, v = a @ attn.q[:, h], a @ attn.k[:, h], a @ attn.v[:, h]
                scores = (q @ k.transpose(1, 2) / math.sqrt(d_h)).masked_fill(
                    torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
                total = total + scores.softmax(-1) @ v @ attn.out[h]
            resid = resid + (total if model.decompress is None else total @ model.decompress.weight.T)
        return model.unembed(resid[:, -1])

    assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_attention_is_causal():
    torch.manual_seed(0)
    heads = attention_only.ParallelHeads(4, 3)
    a = torch.randn(2, 3, 4)
    b = a.clone()
    b[:, 2] += 1.0
    assert torch.allclose(heads(a)[:, :2], heads(b)[:, :2])
    assert not torch.allclose(heads(a)[:, 2], heads(b)[:, 2])


# ---------------------------------------------------------------- loss, schedule, metrics

def test_loss_floor_is_zero_for_a_perfect_predictor_and_log_n_for_a_uniform_one():
    task, data = task_and_data(N=6, d=4, H=1, num_batch=4)
    batch = data.splits["train"]
    table = task.tables[2]
    perfect, uniform = Predictor(one_hot_logits(table)), Predictor(torch.zeros(6, 6, 6))
    for loss in ("ce", "kl"):
        task.settings.loss = loss
        assert abs(loss_of(task, perfect, batch)) < 1e-6
        assert loss_of(task, uniform, batch) == pytest.approx(math.log(6), abs=1e-5)


def test_loss_subtracts_the_true_conditional_entropy_on_a_random_table():
    task, data = task_and_data(N=6, d=4, H=1, alphas=[1.0, 1.0, 0.5], nb_tokens=[6, 6, 3], num_batch=40)
    batch = data.splits["train"]
    table = task.tables[2].float()
    logits = torch.randn(6, 6, 6, generator=torch.Generator().manual_seed(0))
    model = Predictor(logits)
    t = batch["tokens"]
    log_q = logits.log_softmax(-1)[t[:, 0], t[:, 1]]
    rows = table[t[:, 0], t[:, 1]]
    entropy = -(rows * rows.clamp_min(1e-30).log()).sum(-1)
    ce = -log_q.gather(1, t[:, 2:]).squeeze(1)
    task.settings.loss = "ce"
    assert loss_of(task, model, batch) == pytest.approx(float((ce - entropy).mean()), abs=1e-5)
    kl = (rows * (rows.clamp_min(1e-30).log() - log_q)).sum(-1)
    task.settings.loss = "kl"
    assert loss_of(task, model, batch) == pytest.approx(float(kl.mean()), abs=1e-5)
    # predicting pi itself: KL is exactly 0, and CE - entropy is 0 up to sampling noise
    exact = Predictor(task.tables[2].float().clamp_min(1e-30).log())
    assert abs(loss_of(task, exact, batch)) < 1e-5
    task.settings.loss = "ce"
    assert abs(loss_of(task, exact, batch)) < 0.05


def test_contexts_split_counts_memorised_associations():
    task, data = task_and_data(N=6, d=4, H=1, num_batch=4)
    split = data.splits["contexts"]
    perfect, wrong = Predictor(one_hot_logits(task.tables[2])), Predictor(one_hot_logits(task.tables[2], 1))
    with torch.inference_mode():  # as the loop evaluates
        out = task.evaluate_batch(perfect, split)
    assert {key: count for key, (_, count) in out.items()} == {"loss": 36, "accuracy": 36, "expected_accuracy": 36}
    assert int(out["accuracy"][0]) == 36 and float(out["expected_accuracy"][0]) == pytest.approx(36)
    assert abs(float(out["loss"][0])) < 1e-4
    with torch.inference_mode():
        out = task.evaluate_batch(wrong, split)
    assert int(out["accuracy"][0]) == 0 and float(out["expected_accuracy"][0]) == 0.0


def test_original_init_draws_the_original_codes_distributions():
    # the original: token map nn.Linear(d, N).weight -> U(+-1/sqrt(d)); positions nn.Linear(d_h, T).weight
    # -> U(+-1/sqrt(d_h)); q/k/v: Xavier-uniform on MultiheadAttention's packed [3 d_h, d_h] map ->
    # U(+-sqrt(6 / (d_h + 3 d_h))); output map nn.Linear(d_h, d_h) -> U(+-1/sqrt(d_h)).
    N, d, d_h, H = 300, 16, 9, 40
    torch.manual_seed(0)
    original = models.build(make(N=N, d=d, d_h=d_h, H=H, context_window=200, init="original").model_spec())
    torch.manual_seed(0)
    normal = models.build(make(N=N, d=d, d_h=d_h, H=H, context_window=200).model_spec())
    std_of_uniform = lambda bound: bound / math.sqrt(3)  # noqa: E731
    xavier = math.sqrt(6 / (4 * d_h))
    for weight, bound in [(original.embed.weight, 1 / math.sqrt(d)), (original.pos, 1 / math.sqrt(d_h)),
                          (original.attn[0].q, xavier), (original.attn[0].k, xavier), (original.attn[0].v, xavier),
                          (original.attn[0].out, 1 / math.sqrt(d_h)), (original.unembed.weight, 1 / math.sqrt(d))]:
        w = weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound  # uniform: reaches its bound
        assert w.std().item() == pytest.approx(std_of_uniform(bound), rel=0.05)
        assert w.mean().abs() < 0.05 * bound
    # the torch modules the original builds draw within the same bounds
    mha = torch.nn.MultiheadAttention(d_h, 1, bias=False)
    assert mha.in_proj_weight.abs().max() <= xavier and mha.in_proj_weight.abs().max() > 0.9 * xavier
    # 'normal' keeps N(0, 1) embeddings: about 5x the original's at d = 10 (1 against 1/sqrt(30))
    assert normal.embed.weight.std().item() == pytest.approx(1.0, rel=0.05)
    assert normal.pos.std().item() == pytest.approx(1.0, rel=0.05)
    assert normal.attn[0].q.abs().max() <= 1 / math.sqrt(d_h)
    # the draws after the embeddings are the same in both: only the re-drawn tensors differ
    assert torch.equal(normal.attn[0].out, original.attn[0].out)
    assert torch.equal(normal.unembed.weight, original.unembed.weight)
    with pytest.raises(ValueError, match="init"):
        attention_only.MemoryTransformer(N, d, d_h, H, init="xavier")


@pytest.mark.parametrize("schedule, lr, lr_end, expected", [
    ("linear", 0.01, 0.001, [0.01, 0.00775, 0.0055, 0.00325, 0.001, 0.001]),
    ("linear", 0.0, 0.004, [0.0, 0.001, 0.002, 0.003, 0.004, 0.004]),
    ("original", 0.1, 0.005, [0.01, 0.007625, 0.00525, 0.002875, 0.0005, 0.0005]),  # lr^2 -> lr * lr_low
])
def test_learning_rate_ramps_linearly_per_step(schedule, lr, lr_end, expected):
    task = am.Task(make(lr=lr, lr_end=lr_end, lr_schedule=schedule), _Log())
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = task.configure_optimizer(model, total_steps=5)
    assert isinstance(optimizer, torch.optim.Adam)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx(expected, abs=1e-12)


def test_epoch_ramp_is_the_originals_linearlr_stepped_once_per_epoch():
    # the original: Adam(lr) with LinearLR(start_factor = lr, end_factor = lr_low, total_iters = epochs)
    # stepped after each epoch, so epoch e runs at lr * (lr + (lr_low - lr) * e / epochs), constant within it
    task = am.Task(make(lr=0.1, lr_end=0.005, lr_schedule="original", lr_ramp="epoch", n_epochs=4, num_batch=2),
                   _Log())
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = task.configure_optimizer(model, total_steps=8, steps_per_epoch=2)
    reference = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    linear = torch.optim.lr_scheduler.LinearLR(reference, start_factor=0.1, end_factor=0.005, total_iters=4)
    seen, expected = [], []
    for epoch in range(4):
        for _ in range(2):
            seen.append(optimizer.param_groups[0]["lr"])
            expected.append(reference.param_groups[0]["lr"])
            model(torch.ones(1, 2)).sum().backward()
            optimizer.step()
            scheduler.step()
        reference.step()  # no gradients: a no-op, in the order torch expects before the scheduler's step
        linear.step()
    assert seen == pytest.approx(expected, abs=1e-12)
    assert seen == pytest.approx([0.01, 0.01, 0.007625, 0.007625, 0.00525, 0.00525, 0.002875, 0.002875])
    with pytest.raises(settings.SettingsError, match="n_epochs"):
        make(lr_ramp="epoch", n_epochs=None, n_steps=100)


def test_last_batches_accuracy_is_a_window_over_training_batches():
    task, data = task_and_data(N=6, d=4, H=1, num_batch=2, acc_window=3)
    batch = data.splits["train"]
    right, wrong = Predictor(one_hot_logits(task.tables[2])), Predictor(one_hot_logits(task.tables[2], 1))
    assert task.diagnostics(None, None) == {"last_batches_accuracy": 0.0}
    for model, expected in [(right, 1.0), (wrong, 0.5), (wrong, 1 / 3), (wrong, 0.0), (right, 1 / 3)]:
        task.training_loss(model, batch)
        assert task.diagnostics(None, None)["last_batches_accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("values, needle", [
    (dict(eta_min=1e-4), "lr_end"),
    (dict(nb_tokens=[5, 5]), "one support size per position"),
    (dict(N=5, nb_tokens=[5, 6, 1]), "1..N"),
    (dict(context_window=1), "shorter than"),
    (dict(alphas=[1.0]), "at least two positions"),
    (dict(lossx="ce"), "did you mean 'loss'"),
    (dict(init="xavier"), "init"),
    (dict(lr_ramp="epochs"), "lr_ramp"),
])
def test_impossible_settings_are_refused_with_a_message(values, needle):
    with pytest.raises(settings.SettingsError, match=needle):
        make(**values)


# ---------------------------------------------------------------- end to end

TINY = dict(task="assoc_memory", N=6, d=8, H=4, batch_size=32, num_batch=8, n_epochs=20, eval_every=10,
            lr=3e-2, lr_end=1e-2, progress="off")


def test_tiny_run_end_to_end_learns_and_writes_its_folder(tmp_path):
    config = write_settings(tmp_path / "tiny.py", TINY)
    assert main.main(["--config", str(config), "--results-path", "x"]) == 0
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "x" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 10, 20]
    assert summary["contexts"] == 36 and summary["optimal_accuracy"] == 1.0
    assert summary["lower_bound_accuracy"] == pytest.approx(1 / 6 + 5 / 6 * min(1, (4 * 8 + 8) / 36))
    final = summary["final"]
    # 36 associations, capacity H d_h + d = 40: learnt (4 seeds tried: all at 0.99-1.0; chance is 1/6)
    assert final["last_batches_accuracy"] > 0.9 and final["contexts_accuracy"] > 0.9
    assert summary["memorised_contexts"] == round(final["contexts_accuracy"] * 36)
    assert summary["parameters"]["total"] == 6 * 8 + 3 * 8 + 4 * 64 * 4 + 8 * 6
    assert "parameters" in (tmp_path / "x" / "logs.log").read_text()
    # the same settings give the same metrics
    assert main.main(["--config", str(config), "--results-path", "y"]) == 0
    again = json.loads((tmp_path / "y" / "summary.json").read_text())["final"]
    assert {k: v for k, v in again.items() if k != "elapsed"} == {k: v for k, v in final.items() if k != "elapsed"}
    # and the plot of the run
    paths = am.plot(tmp_path / "x", tmp_path)
    assert len(paths) == 1 and paths[0].stat().st_size > 1000


def test_plot_of_a_sweep_puts_the_varied_setting_on_the_axis(tmp_path):
    from results import RunDir, atomic_write_json
    folder = tmp_path / "sweep"
    runs = []
    for i, (d_h, seed, state) in enumerate([(2, 0, "done"), (2, 1, "done"), (4, 0, "done"), (4, 1, "failed")]):
        run = RunDir(folder / str(i))
        run.path.mkdir(parents=True)
        atomic_write_json(run.file("config.json"), settings.as_dict(make(d=4, d_h=d_h, seed=seed)))
        run.set_status(state)
        if state == "done":
            run.write_summary({"final": {"last_batches_accuracy": 0.1 * d_h, "contexts_accuracy": 0.05 * d_h},
                               "lower_bound_accuracy": 0.02 * d_h})
        runs.append({"run": str(i), "overrides": {"d_h": d_h, "seed": seed}})
    atomic_write_json(folder / "sweep.json", {"vary": [{"name": "d_h", "values": [[2, 1], [4, 1]]},
                                                       {"name": "seed", "values": [[0, 1], [1, 1]]}],
                                              "runs": runs})
    assert [p.name for p in am.plot(folder, tmp_path)] == ["assoc_memory_accuracy_vs_d_h.png"]
    assert len(am._runs(folder)) == 3  # the failed run is left out


def test_plot_of_a_sweep_that_varies_a_list_setting(tmp_path):
    """alphas is a list: grouping the runs by it raised 'unhashable type: list'."""
    from results import RunDir, atomic_write_json
    folder = tmp_path / "sweep"
    runs = []
    for i, (alphas, H) in enumerate([([1.0, 1.0], 1), ([1.0, 1.0], 2), ([1.0, 2.0], 1), ([1.0, 2.0], 2)]):
        run = RunDir(folder / str(i))
        run.path.mkdir(parents=True)
        atomic_write_json(run.file("config.json"), settings.as_dict(make(alphas=alphas, H=H)))
        run.set_status("done")
        run.write_summary({"final": {"last_batches_accuracy": 0.1 * H, "contexts_accuracy": 0.05 * H},
                           "lower_bound_accuracy": 0.02 * H})
        runs.append({"run": str(i), "overrides": {"alphas": alphas, "H": H}})
    atomic_write_json(folder / "sweep.json", {"vary": [{"name": "alphas", "values": [[[1.0, 1.0], 1], [[1.0, 2.0], 1]]},
                                                       {"name": "H", "values": [[1, 1], [2, 1]]}], "runs": runs})
    assert [p.name for p in am.plot(folder, tmp_path)] == ["assoc_memory_accuracy_vs_H.png"]


# ---------------------------------------------------------------- scaling-law fits (item 12)

def test_fits_recover_known_laws():
    # a line that saturates: the fit uses the points up to the first above 0.95, that one included
    H = [1, 6, 11, 16, 21, 26, 31]
    acc = [min(1.0, 0.035 * h + 0.05) for h in H]  # 0.085 ... 0.96 (H = 26, the first above 0.95), then 1.0
    assert am.fit_in_H(H, acc) == (pytest.approx(0.035), pytest.approx(0.05), 6, True)  # the capped point left out
    assert am.fit_in_H(H[::-1], acc[::-1]) == (pytest.approx(0.035), pytest.approx(0.05), 6, True)  # any order
    # no point above 0.95: every point is used, and the description says so (not 'up to the first above')
    low = am.fit_in_H([1, 6, 11], [0.05, 0.06, 0.07])
    assert low[2:] == (3, False) and "all 3 points: none above 0.95" in am.describe_fit("linear", low)
    assert "first 6 points, up to the first above 0.95" in am.describe_fit("linear", am.fit_in_H(H, acc))
    slope, _, used, _ = am.fit_in_H(H, [min(1.0, 0.035 * h + 0.05) if h != 26 else 0.9 for h in H])
    assert used == 7 and slope < 0.035  # no point above 0.95 before the saturated one: all are used
    # acc = a d_h^2 + b
    d_h = list(range(1, 11))
    assert am.fit_in_d_h(d_h, [0.007 * x * x + 0.09 for x in d_h]) == pytest.approx((0.007, 0.09))
    # two lines meeting at d = 9: the break found by least squares, each side's coefficients exact
    d = list(range(5, 16))
    brk, before, after = am.fit_piecewise_in_d(d, [0.1 * x - 0.2 if x <= 9 else 0.7 + 0.002 * (x - 9) for x in d])
    assert brk == 9 and before == pytest.approx((0.1, -0.2)) and after == pytest.approx((0.002, 0.682))
    assert am.fit_cubic_in_d([3, 5, 8], [2e-5 * x ** 3 + 0.01 for x in (3, 5, 8)]) == pytest.approx((2e-5, 0.01))


def test_papers_fits_of_the_originals_data_match_the_published_laws():
    # reference/assoc_memory.md: exp 1 at d = 10 about 0.034 per head; exp 4 slopes 0.0013 (d = 3) to
    # 0.0554 (d = 13); exp 3 linear up to d = d_h = 10, flat after
    kind, (slope, _, _, _) = am.paper_fit("H", dict(N=50, d=10, d_h=10, H=11, model="aot", nb_layers=1))
    assert kind == "linear" and slope == pytest.approx(0.034, abs=5e-4)
    slopes = [am.fit_in_H(list(am.PAPER_H), list(am.PAPER_EXP1[d]))[0] for d in (3, 13)]
    assert slopes == [pytest.approx(0.0013, abs=1e-4), pytest.approx(0.0554, abs=1e-4)]
    kind, (brk, (rise, _), (flat, _)) = am.paper_fit("d", dict(N=50, d=7, d_h=10, H=20))
    assert kind == "piecewise" and brk == 10 and rise > 0.1 and abs(flat) < 0.005
    assert am.paper_fit("d_h", dict(N=50, d=10, d_h=3, H=20))[0] == "quadratic"
    assert am.paper_fit("H", dict(N=70, d=10, d_h=10)) is None


def _fake_sweep(folder, name, points):
    """A sweep folder of finished runs: points = [(overrides, last_batches_accuracy)]."""
    from results import RunDir, atomic_write_json
    runs = []
    for i, (overrides, acc) in enumerate(points):
        run = RunDir(folder / str(i))
        run.path.mkdir(parents=True)
        atomic_write_json(run.file("config.json"), settings.as_dict(make(**overrides)))
        run.set_status("done")
        run.write_summary({"final": {"last_batches_accuracy": acc, "contexts_accuracy": acc / 2},
                           "lower_bound_accuracy": 0.02})
        runs.append({"run": str(i), "overrides": overrides})
    names = [n for n in points[0][0] if len({repr(o[n]) for o, _ in points}) > 1]
    atomic_write_json(folder / "sweep.json", {"vary": [{"name": n, "values": []} for n in names], "runs": runs})


def test_report_prints_and_plot_draws_the_fits_beside_the_papers(tmp_path, capsys):
    import report
    H = [1, 6, 11, 16, 21]
    _fake_sweep(tmp_path / "h", "H", [(dict(H=h, seed=s), 0.03 * h + 0.1 + 0.01 * s) for h in H for s in (0, 1)])
    assert report.main([str(tmp_path / "h")]) == 0
    out = capsys.readouterr().out
    assert "acc = 0.0300 H + 0.1050" in out  # ours: the mean over the two seeds
    assert "paper  acc = 0.0340 H + 0.1188" in out  # N = 50, d = d_h = 10: the original's exp 1
    # exp 4: curves against H for several d = d_h, their slopes cubic in d
    _fake_sweep(tmp_path / "d", "d", [(dict(d=d, H=h), min(1.0, (2e-5 * d ** 3 + 0.001) * h + 0.05)) for d in (4, 6, 8)
                                      for h in H])
    notes = "\n".join(am.report_notes(tmp_path / "d"))
    assert "ours   slope = 2.000e-05 d^3 + 0.0010" in notes and "paper  slope = 2.407e-05 d^3" in notes
    # exp 2 (d_h) and the plot's legend carries both fits
    _fake_sweep(tmp_path / "q", "d_h", [(dict(d=10, d_h=x, H=20), 0.007 * x * x + 0.09) for x in range(1, 11)])
    axis, curves, _ = am.scaling_fits(tmp_path / "q")
    assert axis == "d_h" and curves[0]["coefficients"] == pytest.approx((0.007, 0.09))
    assert curves[0]["paper"] == pytest.approx((0.00708, 0.0918), abs=1e-4)
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    drawn = []
    real_savefig = plt.Figure.savefig
    plt.Figure.savefig = lambda fig, path, **kw: (drawn.extend(fig.axes[0].get_legend_handles_labels()[1]),
                                                  real_savefig(fig, path, **kw))
    try:
        am.plot(tmp_path / "q", tmp_path)
    finally:
        plt.Figure.savefig = real_savefig
    assert "fit: acc = 0.00700 d_h^2 + 0.0900" in drawn and "paper's fit: acc = 0.00708 d_h^2 + 0.0918" in drawn
    # exp 3 (d with d_h = 10 fixed) has the paper's fit; d with d_h = d (d_h None) moves d_h too: none
    points = lambda d_h: [(dict(d=d, d_h=d_h, H=20), min(0.8, 0.1 * d - 0.2))  # noqa: E731
                          for d in [10, 11, 12, 13, 14, 15, 5, 6, 7, 8, 9]]  # the first run at d = d_h = 10
    _fake_sweep(tmp_path / "p", "d", points(10))
    _fake_sweep(tmp_path / "n", "d", points(None))
    (fixed,), (moving,) = am.scaling_fits(tmp_path / "p")[1], am.scaling_fits(tmp_path / "n")[1]
    assert fixed["coefficients"][0] == 10 and fixed["paper"][0] == 10 and moving["paper"] is None


# ---------------------------------------------------------------- the low-rank baseline and longer sequences (item 11)

@pytest.mark.parametrize("alphas, N, d", [([1.0, 1.0, 1.0], 7, 3), ([1.0, 1.0, 1.0, 1.0], 5, 4)])
def test_low_rank_has_one_row_per_context_and_the_originals_parameter_count(alphas, N, d):
    # the original's Low_rank: word_emb nn.Linear(d, N ** (n - 1)) and unemb nn.Linear(d, N), nothing else
    n = len(alphas)
    s = make(model="low_rank", N=N, d=d, alphas=alphas)
    model = models.build(s.model_spec())
    assert isinstance(model, attention_only.LowRank)
    assert sum(p.numel() for p in model.parameters()) == N ** (n - 1) * d + d * N == s.model_spec().parameter_count()
    torch.manual_seed(0)
    tokens = torch.randint(0, N, (6, n - 1))
    index = sum(tokens[:, j] * N ** (n - 2 - j) for j in range(n - 1))  # the context's row, by hand
    assert torch.allclose(model(tokens), model.embed.weight[index] @ model.unembed.weight.T)
    # init 'original' draws the rows as the original's nn.Linear weight: U(+-1/sqrt(d))
    torch.manual_seed(0)
    big = models.build(make(model="low_rank", N=40, d=16, init="original").model_spec())
    assert big.embed.weight.abs().max() <= 0.25 and big.embed.weight.std().item() == pytest.approx(0.25 / math.sqrt(3),
                                                                                                   rel=0.05)
    assert any(n.startswith("W = 4 has no effect with model = 'low_rank'") for n in make(model="low_rank", W=4).notes())


def test_longer_sequences_continue_the_chain_and_are_labelled_at_every_position():
    # context_window = 6 > n = 3: tokens 2..5 each follow f(the two before); a prediction after every
    # position with two tokens before it, i.e. 4 per sequence, all of them in the loss and the accuracies
    task, data = task_and_data(N=6, d=4, H=2, num_batch=4, batch_size=8, context_window=6)
    tokens = data.splits["train"]["tokens"]
    f = task.tables[2].argmax(-1)
    assert tokens.shape == (32, 6)
    for k in range(2, 6):
        assert torch.equal(tokens[:, k], f[tokens[:, k - 2], tokens[:, k - 1]])
    assert data.facts["sequence_length"] == 6

    class Windows(torch.nn.Module):  # answers from the table, right at the positions listed only
        def __init__(self, right):
            super().__init__()
            self.right, self.dummy = right, torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, first=None):
            out = []
            for i in range(x.shape[1] - 1 if first is None else first, x.shape[1]):
                shift = 0 if i - 1 in self.right else 1  # position i predicts token i + 1
                out.append(one_hot_logits(task.tables[2], shift)[x[:, i - 1], x[:, i]])
            out = torch.stack(out, 1) + 0 * self.dummy
            return out[:, -1] if first is None else out

    with torch.inference_mode():
        assert task.evaluate_batch(Windows({0, 1, 2, 3}), data.splits["train"])["accuracy"] == (32 * 4, 32 * 4)
        right, count = task.evaluate_batch(Windows({2}), data.splits["train"])["accuracy"]
        assert (int(right), count) == (32, 32 * 4)
        perfect_loss, _ = task.evaluate_batch(Windows({0, 1, 2, 3}), data.splits["train"])["loss"]
        assert abs(float(perfect_loss)) < 1e-3
        # the all-contexts split keeps its n-token rows: the model is read after its last position only
        assert task.evaluate_batch(Windows({0, 1, 2, 3}), data.splits["contexts"])["accuracy"][1] == 36
    task.training_loss(Windows({1, 3}), data.splits["train"])
    assert task.diagnostics(None, None)["last_batches_accuracy"] == pytest.approx(0.5)
    # the original's longer sequences, draw for draw (golden values from its generate_data, N = 6,
    # torch.manual_seed(5), batch 4 x 2, context_window 6)
    original = task_and_data(N=6, batch_size=4, num_batch=2, context_window=6, sampler="original", data_seed=5)[1]
    assert original.splits["train"]["tokens"].tolist() == [
        [4, 1, 2, 3, 1, 3], [2, 2, 1, 0, 1, 1], [1, 4, 5, 2, 3, 1], [4, 0, 3, 0, 1, 1],
        [5, 5, 0, 5, 1, 3], [0, 5, 1, 3, 3, 2], [1, 3, 3, 2, 3, 1], [5, 0, 5, 1, 3, 3]]


@pytest.mark.parametrize("kind", ["aot", "low_rank", "transformer"])
def test_every_position_logits_equal_the_model_read_on_each_prefix(kind):
    torch.manual_seed(0)
    s = make(N=7, d=6, d_h=4 if kind == "aot" else None, H=3, nb_layers=2 if kind == "aot" else 1, model=kind,
             W=5 if kind == "transformer" else 0, context_window=6)
    model = models.build(s.model_spec())
    x = torch.randint(0, 7, (4, 5))
    every = model(x, first=1)
    assert every.shape == (4, 4, 7)
    for j, i in enumerate(range(1, 5)):
        assert torch.allclose(every[:, j], model(x[:, :i + 1]), atol=1e-5)


def test_tiny_runs_with_longer_sequences_and_the_low_rank_model_learn(tmp_path):
    for name, extra in (("long", dict(context_window=5)), ("low_rank", dict(model="low_rank", d=6))):
        config = write_settings(tmp_path / f"{name}.py", dict(TINY, **extra))
        assert main.main(["--config", str(config), "--results-path", name]) == 0
        final = json.loads((tmp_path / name / "summary.json").read_text())["final"]
        # 36 associations: chance is 1/6; both learn them (seeds 0-3 tried: 0.99-1.0)
        assert final["last_batches_accuracy"] > 0.9 and final["contexts_accuracy"] > 0.9, (name, final)


def test_experiment_confs_follow_the_originals_protocol_and_the_cpu_conf_the_defaults():
    from pathlib import Path
    confs = sorted((Path(__file__).resolve().parents[1] / "conf").glob("assoc_memory_*.py"))
    assert len(confs) >= 14
    for path in confs:
        s = settings.build(settings.load_file(path))
        protocol = (s.data_seed, s.sampler, s.init, s.lr_ramp)
        if path.stem == "assoc_memory_cpu":
            assert protocol == (None, "vectorised", "normal", "step"), path.name
        else:
            assert protocol == (2222, "original", "original", "epoch"), path.name


def test_the_step_schedules_settings_are_noted_as_having_no_effect_here():
    """lr_step_size, lr_gamma, lr_milestones belong to the step schedules this programme does not offer: a note
    each, not the common one that points to 'multistep' (a choice assoc_memory lacks), nor silence."""
    notes = settings.build({"task": "assoc_memory", "lr_gamma": 0.5, "lr_step_size": 3, "lr_milestones": [1]}).notes()
    assert [n.split(" = ")[0] for n in notes] == ["lr_step_size", "lr_gamma", "lr_milestones"]
    assert all("no effect in assoc_memory" in n and "multistep" not in n for n in notes)
    assert settings.build({"task": "assoc_memory"}).notes() == []


def test_sizes_a_model_kind_does_not_have_are_noted_not_refused_and_low_rank_has_no_attention_bound(tmp_path):
    """A sweep over model (aot, transformer, low_rank) shares one base: W, or H and d_h, are noted where the
    model has no MLP or no attention (W was refused, stopping the sweep); the paper's bound and H d_h + d are an
    attention layer's, so the low-rank baseline's summary has none (it gave H d_h + d of heads it lacks)."""
    aot = make(W=10)
    assert any(n.startswith("W = 10 has no effect with model = 'aot'") for n in aot.notes())
    low = make(model="low_rank", H=5, d_h=3)
    notes = low.notes()
    assert any(n.startswith("H = 5 has no effect with model = 'low_rank'") for n in notes)
    assert any(n.startswith("d_h = 3 has no effect with model = 'low_rank'") for n in notes)
    assert not any(n.startswith(("W ", "H ", "d_h ")) for n in make(model="transformer", W=10).notes())
    summary = main.run(settings.build({**TINY, "model": "low_rank", "H": 5, "d_h": 3, "n_epochs": 2}), tmp_path / "lr")
    assert summary["lower_bound_accuracy"] is None and summary["associations_bound"] is None
    assert summary["data_facts"]["lower_bound_accuracy"] is None
    assert 0 < summary["optimal_accuracy"] <= 1.0
    assert "note: H = 5 has no effect with model = 'low_rank'" in (tmp_path / "lr" / "logs.log").read_text()
    attention = main.run(settings.build({**TINY, "n_epochs": 2}), tmp_path / "aot")
    assert attention["associations_bound"] == 4 * 8 + 8 and 0 < attention["lower_bound_accuracy"] <= 1
