"""Group arithmetic: tables against independent arithmetic, the data file's group axioms, the critical ratio,
the losses, the ridge top layer, Muon, refusals, and tiny runs end to end."""
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main
import report
import settings
import sweep
from conftest import write_settings
from results import RunDir
import group_mlp
from tasks import group_arithmetic as ga

BASE = dict(task="group_arithmetic", hidden_size=32, n_epochs=3, progress="off")


# these tensors are tiny: a second intra-op thread only adds waiting (four times slower on a busy machine)
pytestmark = pytest.mark.usefixtures("one_thread")


def build(**values):
    return settings.build({**BASE, **values})


def table_rows(**values):
    """Every (operands, label) row of the task's data, train and test together."""
    data = ga.Task(build(**values), None).build_data()
    x = torch.cat([data.splits["train"]["x"], data.splits["test"]["x"]]).numpy()
    labels = torch.cat([data.splits["train"]["labels"], data.splits["test"]["labels"]]).numpy()
    return data, x, labels


def refusal(**values):
    with pytest.raises(settings.SettingsError) as err:
        build(**values)
    return str(err.value)


# ---------------------------------------------------------------- tables against independent arithmetic

def test_every_pair_appears_once_and_the_split_follows_test_size():
    data, x, _ = table_rows(M=13, test_size=0.3)
    assert sorted(map(tuple, x)) == list(itertools.product(range(13), repeat=2))
    assert data.size("train") == round(0.7 * 169) == 118


def test_cyclic_product_labels_are_componentwise_sums_in_mixed_radix():
    orders = (2, 3, 4)

    def digits(e):  # first factor least significant
        return e % 2, (e // 2) % 3, e // 6

    _, x, labels = table_rows(M="2x3x4")
    assert len(x) == 24 * 24
    for (a, b), c in zip(x, labels):
        assert digits(c) == tuple((p + q) % m for p, q, m in zip(digits(a), digits(b), orders))


def test_three_operands_sum_every_triple():
    _, x, labels = table_rows(M=5, num_of_ops=3)
    assert len(x) == 125
    assert all(c == (a + b + d) % 5 for (a, b, d), c in zip(x, labels))


def test_modular_multiplication_over_nonzero_residues():
    _, x, labels = table_rows(group_type="modular_multiplication", M=7)
    assert len(x) == 36
    assert all(c + 1 == (a + 1) * (b + 1) % 7 for (a, b), c in zip(x, labels))


def test_symmetric_group_labels_are_compositions():
    def compose(p, q):  # apply p first, then q
        return tuple(q[p[i]] for i in range(len(p)))

    perms = sorted(itertools.permutations(range(4)))
    assert [tuple(p) for p in ga.symmetric_group(4)] == perms
    _, x, labels = table_rows(group_type="sym", M=4)
    assert len(x) == 576
    for (a, b), c in zip(x, labels):
        assert perms[c] == compose(perms[a], perms[b])
    # the group is not abelian, so the order of composition is really tested
    assert any(compose(p, q) != compose(q, p) for p in perms for q in perms)


def test_expression_is_evaluated_mod_M():
    _, x, labels = table_rows(group_type="expression", M=11, expression="x**2+x*y+y**2")
    assert all(c == (a * a + a * b + b * b) % 11 for (a, b), c in zip(x, labels))
    _, x, labels = table_rows(group_type="expression", M=10, expression="3*x - y**3 + -(5)")
    assert all(c == (3 * a - b ** 3 - 5) % 10 for (a, b), c in zip(x, labels))


def _inverse(b, M):
    try:
        return pow(b, -1, M)
    except ValueError:
        return None


@pytest.mark.parametrize("M", [7, 10])
def test_expression_division_and_inverses_are_mod_M_and_undefined_rows_are_left_out(M):
    for text, brute in (("x / y", lambda a, b: a * _inverse(b, M) if _inverse(b, M) is not None else None),
                        ("inv(x) + 2*y", lambda a, b: _inverse(a, M) + 2 * b if _inverse(a, M) is not None else None),
                        ("pow(x, -1, %d) * y**-2 - 1" % M,
                         lambda a, b: (_inverse(a, M) * _inverse(b, M) ** 2 - 1)
                         if None not in (_inverse(a, M), _inverse(b, M)) else None),
                        ("(x + y) / (x - y)", lambda a, b: (a + b) * _inverse((a - b) % M, M)
                         if _inverse((a - b) % M, M) is not None else None)):
        data, x, labels = table_rows(group_type="expression", M=M, expression=text)
        expected = {(a, b): v % M for a in range(M) for b in range(M) if (v := brute(a, b)) is not None}
        assert dict(zip(map(tuple, x.tolist()), labels.tolist())) == expected, text
        assert data.facts["rows"] == len(expected) and data.facts["rows_undefined"] == M * M - len(expected)
    assert ga.expression_table("x / x", 10)[3, 3] == 1 and ga.expression_table("x / x", 10)[2, 2] == -1


@pytest.mark.parametrize("text, needle", [
    ("__import__('os').system('true')", "is not allowed"),
    ("x % 2", "is not allowed"),
    ("x // 2", "is not allowed"),
    ("x ** y", "exponents must be integers"),
    ("pow(x, y)", "exponents must be integers"),
    ("pow(x, -1, 8)", "the modulus of pow must be M = 7"),
    ("inv(x, y)", "inv takes 1 argument"),
    ("open('f')", "is not allowed"),
    ("x.real", "is not allowed"),
    ("x + z", "is not allowed"),
    ("x +", "not a valid expression"),
    ("x / 0", "undefined mod 7 at every (x, y)"),
    # XOR in the original's Python eval, a power in mathematics: neither is guessed (it was taken as a power)
    ("x^2+y^2", "'^' is bitwise XOR in Python"),
])
def test_expression_is_parsed_never_evaluated(text, needle):
    message = refusal(group_type="expression", M=7, expression=text)
    assert needle in message
    assert "no training examples" not in message  # (an expression undefined everywhere: one problem, its cause)


# ---------------------------------------------------------------- the Cayley-table file

# Groups of order n (OEIS A000001) for n = 1..64; abelian ones are counted from partitions below.
GROUPS_OF_ORDER = [1, 1, 1, 2, 1, 2, 1, 5, 2, 2, 1, 5, 1, 2, 1, 14, 1, 5, 1, 5, 2, 2, 1, 15, 2, 2, 5, 4, 1, 4, 1,
                   51, 1, 2, 1, 14, 1, 2, 2, 14, 1, 6, 1, 4, 2, 2, 1, 52, 2, 5, 1, 5, 1, 15, 2, 13, 2, 2, 1, 13,
                   1, 2, 4, 267]


def abelian_groups_of_order(n):
    def partitions(k, largest=None):
        largest = k if largest is None else largest
        return 1 if k == 0 else sum(partitions(k - i, i) for i in range(1, min(k, largest) + 1))
    count, p = 1, 2
    while n > 1:
        e = 0
        while n % p == 0:
            n, e = n // p, e + 1
        count *= partitions(e)
        p += 1
    return count


def test_data_file_holds_every_nonabelian_group_up_to_64():
    records = ga.load_collection()
    for n in range(1, 65):
        ids = [r["smallgroup_id"] for r in records if r["order"] == n]
        assert len(ids) == GROUPS_OF_ORDER[n - 1] - abelian_groups_of_order(n), n
        assert len(set(ids)) == len(ids) and all(1 <= i <= GROUPS_OF_ORDER[n - 1] for i in ids)
    assert len(records) == 469


def test_every_table_in_the_data_file_is_a_nonabelian_group():
    for r in ga.load_collection():
        t, n = r["table"], r["order"]
        assert t.shape == (n, n) and t.min() >= 0 and t.max() < n  # closure
        a = np.arange(n)
        # associativity: (ab)c == a(bc) for every triple
        assert np.array_equal(t[t[:, :, None], a[None, None, :]], t[a[:, None, None], t[None, :, :]]), r["name"]
        identities = [e for e in range(n) if np.array_equal(t[e], a) and np.array_equal(t[:, e], a)]
        assert len(identities) == 1, r["name"]
        e = identities[0]
        assert all((t[g] == e).sum() == 1 and (t[:, g] == e).sum() == 1 for g in range(n)), r["name"]  # inverses
        assert not np.array_equal(t, t.T), r["name"]
        assert sum(d * d for d in r["irrep_degrees"]) == n and r["num_irreps"] == len(r["irrep_degrees"])


def test_the_data_file_is_json_lines_as_documented():
    import gzip
    with gzip.open(ga.DATA_FILE, "rt") as f:
        first = json.loads(f.readline())
    assert {"table", "order", "smallgroup_id", "name", "num_irreps", "irrep_degrees"} <= set(first)
    assert first["index_base"] == 1 and min(map(min, first["table"])) == 1


def test_collection_selects_by_largest_irrep_degree_and_indexes_with_M():
    data, x, labels = table_rows(group_type="collection", group_collection_max_dk=3, M=0)
    group = [r for r in ga.load_collection() if max(r["irrep_degrees"]) == 3][0]
    assert data.facts["order"] == group["order"] and data.facts["irrep_degrees"] == group["irrep_degrees"]
    assert all(c == group["table"][a, b] for (a, b), c in zip(x, labels))


def test_collection_refuses_a_degree_without_groups_and_lists_the_available_ones():
    message = refusal(group_type="collection")  # the original's default max_dk 0 selects nothing
    assert "group_collection_max_dk = 0 selects no group" in message
    assert "2 (282)" in message and "7 (1)" in message
    assert "choose 0..25" in refusal(group_type="collection", group_collection_max_dk=3, M=26)


# ---------------------------------------------------------------- the critical ratio

@pytest.mark.parametrize("M, n_train", [(23, 198), (71, 832), (127, 1691)])
def test_critical_ratio_counts_match_the_paper(M, n_train):
    data = ga.Task(build(M=M, use_critical_ratio=True), None).build_data()
    assert (data.size("train"), data.size("train") + data.size("test")) == (n_train, M * M)


def test_multiplier_and_delta_and_the_collection_correction():
    for c, expected in ((1.75, 126), (3.75, 270)):  # round(c * 23 ln 23): 126.2, 270.3
        data = ga.Task(build(M=23, use_critical_ratio=True, critical_ratio_multiplier=c), None).build_data()
        assert data.size("train") == expected
    data = ga.Task(build(M=23, use_critical_ratio=True, critical_ratio_delta=1.0), None).build_data()
    assert data.size("train") == 126  # (2.7482 - 1) * 23 ln 23 = 126.1
    # A4 (order 12, largest irrep degree 3): corr = 3/2, p = 1.5 * 2.7482 * ln 12 / 12 of 144 pairs
    data = ga.Task(build(group_type="collection", group_collection_max_dk=3, M=0, use_critical_ratio=True),
                   None).build_data()
    assert data.size("train") == 123  # 1.5 * 2.7482 * ln(12) * 12 = 122.9


def test_split_is_seeded():
    a = ga.Task(build(M=11, seed=1), None).build_data().splits["train"]["x"]
    b = ga.Task(build(M=11, seed=1), None).build_data().splits["train"]["x"]
    c = ga.Task(build(M=11, seed=2), None).build_data().splits["train"]["x"]
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- model, losses, ridge

def _onehot_forward(model, x, M):
    """The paper's network written out: act(W [onehot(a); onehot(b)]) then V."""
    onehots = torch.cat([F.one_hot(x[:, i], M).float() for i in range(x.shape[1])], 1)
    h = onehots @ model.W.weight.t()
    return h, model.V.weight


def test_model_is_W_times_concatenated_onehots_then_sqr_then_V():
    torch.manual_seed(0)
    model = group_mlp.GroupMLP(7, 2, 16)
    x = torch.randint(0, 7, (40, 2))
    h, V = _onehot_forward(model, x, 7)
    assert torch.allclose(model(x), (h * h) @ V.t(), atol=1e-5)
    with torch.inference_mode():  # the evaluation path (in-place activations) gives the same
        assert torch.allclose(model(x), (h * h) @ V.t(), atol=1e-5)
    trainable = group_mlp.GroupMLP(7, 2, 16, embed_trainable=True)
    trainable.load_state_dict(model.state_dict())
    assert torch.allclose(trainable(x), model(x), atol=1e-5)  # identity embedding at init
    assert trainable.embedding.weight.requires_grad and not model.embedding.weight.requires_grad


def test_a_trainable_embedding_can_start_from_the_original_s_normal_draws():
    """The original trains a trainable embedding from nn.Embedding's N(0, 1) draws (only the frozen one is the
    identity): embed_init = 'normal' keeps them; a frozen embedding other than the identity is refused."""
    torch.manual_seed(3)
    model = group_mlp.GroupMLP(7, 2, 16, embed_trainable=True, embed_init="normal")
    torch.manual_seed(3)
    assert torch.equal(model.embedding.weight, torch.nn.Embedding(7, 7).weight)
    x = torch.randint(0, 7, (40, 2))
    codes = model.embedding(x).reshape(40, -1)
    h = codes @ model.W.weight.t()
    assert torch.allclose(model(x), (h * h) @ model.V.weight.t(), atol=1e-4)
    assert build(M=7, embed_trainable=True, embed_init="normal").model_spec().embed_init == "normal"
    # frozen, the embedding is the identity whatever embed_init says: noted, not refused (a sweep may vary
    # embed_trainable with embed_init = 'normal' in its base)
    frozen = build(M=7, embed_init="normal")
    assert any("embed_init = 'normal' has no effect" in note for note in frozen.notes())
    torch.manual_seed(3)
    assert torch.equal(group_mlp.GroupMLP(7, 2, 16, embed_init="normal").embedding.weight, torch.eye(7))


def test_relu_residual_layers_and_multipliers():
    torch.manual_seed(0)
    model = group_mlp.GroupMLP(5, 2, 8, activation="relu", other_layers=1, output_multiplier=3.0)
    x = torch.randint(0, 5, (20, 2))
    h0, V = _onehot_forward(model, x, 5)
    h = torch.relu(h0)
    L = model.layers[0].weight
    assert torch.allclose(model(x), 3.0 * torch.relu(h + h @ L.t()) @ V.t(), atol=1e-5)
    for name, act in (("silu", F.silu), ("relusqr", lambda v: torch.relu(v) ** 2)):
        model.activation = name
        expected = act(act(h0) + act(h0) @ L.t()) @ V.t() * 3.0
        assert torch.allclose(model(x), expected, atol=1e-4), name
        with torch.inference_mode():
            assert torch.allclose(model(x), expected, atol=1e-4), name
    torch.manual_seed(0)
    scaled = group_mlp.GroupMLP(5, 2, 8, activation="relu", other_layers=1, top_layer_init_multiplier=0.5)
    assert torch.allclose(scaled.V.weight, 0.5 * V)


def test_complex_weights_give_the_real_part():
    torch.manual_seed(0)
    model = group_mlp.GroupMLP(5, 2, 8, use_complex_weights=True, complex_init="random")
    x = torch.randint(0, 5, (10, 2))
    onehots = torch.cat([F.one_hot(x[:, i], 5) for i in range(2)], 1).to(torch.cfloat)
    h = onehots @ model.W.weight.t()
    assert model.W.weight.is_complex()
    assert torch.allclose(model(x), ((h * h) @ model.V.weight.t()).real, atol=1e-5)


def test_mse_loss_is_the_centred_squared_distance():
    torch.manual_seed(0)
    out, labels = torch.randn(30, 7) * 3, torch.randint(0, 7, (30,))
    centred = out - out.mean(1, keepdim=True)
    target = torch.zeros(30, 7)
    target[torch.arange(30), labels] = 1.0
    expected = ((centred - (target - 1 / 7)) ** 2).sum(1)
    assert torch.allclose(ga.mse_loss(out, labels), expected.mean(), atol=1e-5)
    assert torch.allclose(ga.mse_loss(out, labels, reduction="sum"), expected.sum(), atol=1e-4)


def test_ridge_solution_is_the_regularised_least_squares_solution():
    torch.manual_seed(0)
    h, labels, lam = torch.randn(60, 12), torch.randint(0, 5, (60,)), 0.7
    Y = F.one_hot(labels, 5).double() - 0.2
    H = h.double()
    expected = torch.linalg.solve(H.T @ H + lam * torch.eye(12, dtype=torch.float64), H.T @ Y)
    assert torch.allclose(group_mlp.ridge_solution(h, Y.float(), lam).double(), expected, atol=1e-4)
    # lambda 0 with more rows than features: ordinary least squares
    assert torch.allclose(group_mlp.ridge_solution(h, Y.float(), 0.0).double(), torch.linalg.lstsq(H, Y).solution,
                          atol=1e-4)


def test_ridge_top_layer_is_refit_every_training_forward_and_gets_no_gradient():
    torch.manual_seed(0)
    model = group_mlp.GroupMLP(5, 2, 12, ridge_lambda=0.1)
    x, labels = torch.randint(0, 5, (40, 2)), torch.randint(0, 5, (40,))
    out = model(x, ridge_labels=labels)
    H = model.features(x).detach().double()
    Y = F.one_hot(labels, 5).double() - 0.2
    expected = torch.linalg.solve(H.T @ H + 0.1 * torch.eye(12, dtype=torch.float64), H.T @ Y)
    assert torch.allclose(model.V.weight.t().double(), expected, atol=1e-3)
    ga.mse_loss(out, labels).backward()
    assert model.V.weight.grad is None and model.W.weight.grad is not None
    before = model.V.weight.clone()
    model(x)  # evaluation forward: V is kept
    assert torch.equal(model.V.weight, before)


# ---------------------------------------------------------------- the optimiser (optim.py; tested in test_optim.py)

def test_muon_goes_on_W_only_and_the_rest_gets_adam_with_coupled_decay():
    torch.manual_seed(0)
    s = build(M=5, optim="muon", weight_decay=1e-2, lr=0.05, embed_trainable=True)
    model = group_mlp.GroupMLP(5, 2, 8, embed_trainable=True)
    opt, _ = ga.Task(s, None).configure_optimizer(model, total_steps=10)
    muon = [p for g in opt.param_groups if g["muon"] for p in g["params"]]
    assert len(muon) == 1 and muon[0] is model.W.weight
    V = model.V.weight
    twin = torch.nn.Parameter(V.detach().clone())
    reference = torch.optim.Adam([twin], lr=0.05, weight_decay=1e-2)
    for _ in range(3):
        grad = torch.randn_like(V)
        for p in model.parameters():
            p.grad = torch.randn_like(p) if p is not V else grad.clone()
        twin.grad = grad.clone()
        opt.step()
        reference.step()
    assert torch.allclose(V, twin, atol=1e-6)


# ---------------------------------------------------------------- faithful to the original (issue 16)

ROOT = Path(__file__).resolve().parents[1]


def test_sklearn_split_sizes_ceil_the_test_and_floor_the_train():
    for M, test_size, n_train, n_test, ours in ((23, 0.1, 476, 53, 476), (23, 0.7, 158, 371, 159),
                                                 (13, 0.3, 118, 51, 118), (10, 0.25, 75, 25, 75)):
        data = ga.Task(build(M=M, test_size=test_size, split_method="sklearn"), None).build_data()
        assert (data.size("train"), data.size("test")) == (n_train, n_test), (M, test_size)
        assert ga.Task(build(M=M, test_size=test_size), None).build_data().size("train") == ours
    # the critical ratio goes through the original's test_size = 1 - p: M = 23, c = 2.75 -> 198 of 529
    data = ga.Task(build(M=23, use_critical_ratio=True, critical_ratio_multiplier=2.75, split_method="sklearn"),
                   None).build_data()
    assert (data.size("train"), data.size("test")) == (198, 331)


def test_sklearn_split_picks_the_rows_scikit_learn_picks():
    # train_test_split(np.arange(25), test_size=0.3, random_state=3) (docs/group_arithmetic/README.md)
    train = [1, 22, 14, 4, 21, 6, 7, 5, 20, 9, 11, 24, 19, 0, 8, 3, 10]  # scikit-learn 1.9.1 printed these
    test = [18, 17, 12, 23, 15, 16, 13, 2]
    data = ga.Task(build(M=5, test_size=0.3, seed=3, split_method="sklearn"), None).build_data()
    row = lambda split: (data.splits[split]["x"] @ torch.tensor([5, 1])).tolist()  # rows listed as (a, b)
    assert row("train") == train and row("test") == test
    assert (data.splits["train"]["labels"] == data.splits["train"]["x"].sum(1) % 5).all()


def test_sklearn_split_of_a_product_group_follows_the_original_row_order():
    # the original lists Z_2 x Z_3 by digits with the first factor slowest: (0,0), (0,1), (0,2), (1,0), ...
    # and numbers element (d1, d2) as d1 + 2 * d2
    elements = [d1 + 2 * d2 for d1, d2 in itertools.product(range(2), range(3))]
    original_rows = [(a, b) for a in elements for b in elements]
    permutation = np.random.RandomState(4).permutation(36)
    data = ga.Task(build(M="2x3", test_size=0.25, seed=4, split_method="sklearn"), None).build_data()
    assert [tuple(r) for r in data.splits["test"]["x"].tolist()] == [original_rows[i] for i in permutation[:9]]
    assert [tuple(r) for r in data.splits["train"]["x"].tolist()] == [original_rows[i] for i in permutation[9:]]


def test_original_seeding_and_per_operand_first_layer_draw_what_the_original_drew():
    s = build(M=7, hidden_size=16, seed=5, init_seed_offset=2, first_layer_init="per_operand")
    torch.manual_seed(123)  # whatever the global state, the offset reseeds it
    model = ga.Task(s, None).build_model(None)
    torch.manual_seed(7)  # the original's torch seed: seed + 2; its modules in the order it builds them
    torch.nn.Embedding(7, 7)
    a, b, c = (torch.nn.Linear(7, 16, bias=False), torch.nn.Linear(7, 16, bias=False),
               torch.nn.Linear(16, 7, bias=False))
    assert torch.equal(model.W.weight, torch.cat([a.weight, b.weight], 1)) and torch.equal(model.V.weight, c.weight)
    # the default draws W as one Linear(14, 16): bound 1/sqrt(14) instead of 1/sqrt(7)
    torch.manual_seed(0)
    assert group_mlp.GroupMLP(7, 2, 512).W.weight.abs().max() < 7 ** -0.5 / 1.3
    torch.manual_seed(0)
    assert group_mlp.GroupMLP(7, 2, 512, first_layer_init="per_operand").W.weight.abs().max() > 7 ** -0.5 / 1.01


# The original's Figure 3 log (modular_addition_simple2_fig3.log): epoch -> (train acc, train loss, test acc, test loss)
FIG3_LOG = {0: (0.05042016806722689, 0.9693093299865723, 0.05660377358490566, 0.9671908617019653),
            17: (1.0, None, 0.0, 1.1478278636932373),
            27: (1.0, None, 0.5283018867924528, 0.8534924983978271),
            33: (1.0, None, 0.9056603773584906, 0.6490453481674194),
            45: (1.0, None, 1.0, 0.5830644369125366)}


def test_fig3_replay_reproduces_the_original_log(tmp_path):
    assert main.main(["--config", str(ROOT / "conf" / "group_arithmetic_fig3_replay.py"), "--set", "n_epochs=46",
                      "--set", "progress='off'", "--results-path", "fig3"]) == 0
    metrics = RunDir("fig3").read_metrics()
    first = lambda key, level: next(m["epoch"] for m in metrics if m[key] >= level)
    assert (first("train_accuracy", 1.0), first("test_accuracy", 0.5), first("test_accuracy", 0.9),
            first("test_accuracy", 1.0)) == (17, 27, 33, 45)
    for epoch, (train_acc, train_loss, test_acc, test_loss) in FIG3_LOG.items():
        m = metrics[epoch]
        assert m["epoch"] == epoch and m["train_accuracy"] == pytest.approx(train_acc, abs=1e-9)
        assert m["test_accuracy"] == pytest.approx(test_acc, abs=1e-9)
        assert m["test_loss"] == pytest.approx(test_loss, abs=1e-5)
        assert train_loss is None or m["train_loss"] == pytest.approx(train_loss, abs=1e-5)


def _train_a_few_steps(s, steps=5):
    task = ga.Task(s, None)
    data = task.build_data()
    torch.manual_seed(s.seed)
    model = task.build_model(data)
    opt, _ = task.configure_optimizer(model, total_steps=steps)
    for _ in range(steps):
        opt.zero_grad()
        task.training_loss(model, data.train).backward()
        opt.step()
    return model, data


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_complex_weights_start_real_and_stay_real_by_default(optimizer):
    common = dict(M=7, test_size=0.3, loss_func="mse", optim=optimizer, weight_decay=1e-2, lr=0.01)
    assert build(**common).complex_init == "real"  # the original's
    model, data = _train_a_few_steps(build(use_complex_weights=True, **common))
    real, _ = _train_a_few_steps(build(**common))
    for name in ("W", "V"):
        weight = getattr(model, name).weight
        assert weight.is_complex() and torch.count_nonzero(weight.imag) == 0, name
        assert torch.allclose(weight.real, getattr(real, name).weight, atol=1e-6), name
    x = data.splits["test"]["x"]
    assert torch.allclose(model(x), real(x), atol=1e-5)


def test_complex_init_random_is_a_genuinely_complex_network():
    model, _ = _train_a_few_steps(build(M=7, test_size=0.3, use_complex_weights=True, complex_init="random"))
    assert model.W.weight.imag.abs().mean() > 0.01 and model.V.weight.imag.abs().mean() > 0.01


@pytest.mark.parametrize("num_ops, other_layers", [(2, 0), (3, 1)])
def test_inner_product_network_multiplies_the_operands_columns(num_ops, other_layers):
    torch.manual_seed(0)
    model = group_mlp.GroupMLP(5, num_ops, 8, use_inner_product_act=True, other_layers=other_layers)
    x = torch.randint(0, 5, (30, num_ops))
    W = model.W.weight
    h = torch.ones(30, 8)
    for i in range(num_ops):  # W_i onehot(x_i), multiplied elementwise; no activation on the product
        h = h * (F.one_hot(x[:, i], 5).float() @ W[:, 5 * i:5 * (i + 1)].t())
    for layer in model.layers:
        h = (h + h @ layer.weight.t()) ** 2
    assert torch.allclose(model(x), h @ model.V.weight.t(), atol=1e-5)
    with torch.inference_mode():
        assert torch.allclose(model(x), h @ model.V.weight.t(), atol=1e-5)


@pytest.mark.parametrize("extra, check", [
    (dict(), "whole rows"), (dict(first_layer_init="per_operand"), "blocks"),
    (dict(use_inner_product_act=True, first_layer_init="per_operand", lr=2.0), "norms"),
])
def test_normalize_runs_after_every_optimiser_step(extra, check):
    s = build(**{**dict(M=5, test_size=0.3, normalize=True, lr=0.05), **extra})
    model, _ = _train_a_few_steps(s, steps=3)
    W, V = model.W.weight.detach(), model.V.weight.detach()
    blocks = [W[:, :5], W[:, 5:]]
    if check == "norms":
        assert all((b.norm(dim=1) <= 1 + 1e-5).all() for b in blocks) and (blocks[0].norm(dim=1) > 0.99).any()
        return
    centred = blocks if check == "blocks" else [W]
    assert all(b.mean(dim=1).abs().max() < 1e-6 for b in centred)
    assert V.mean(dim=0).abs().max() < 1e-6
    if check == "whole rows":  # centring the whole row leaves each block's mean free
        assert blocks[0].mean(dim=1).abs().max() > 1e-3
    plain, _ = _train_a_few_steps(build(**{**dict(M=5, test_size=0.3, lr=0.05), **extra}), steps=3)
    assert plain.V.weight.mean(dim=0).abs().max() > 1e-4  # without normalize nothing is centred


def test_bad_saved_files_are_refused_naming_the_setting(tmp_path):
    torch.save({"train_indices": [0, 25], "test_indices": [1]}, tmp_path / "split.pt")
    assert "load_dataset_split" in refusal(M=5, load_dataset_split=str(tmp_path / "split.pt"))
    assert "0..24" in refusal(M=5, load_dataset_split=str(tmp_path / "split.pt"))
    torch.save({"train_indices": [], "test_indices": [1]}, tmp_path / "empty.pt")  # (a float tensor, being empty)
    assert "train_indices must be a non-empty list" in refusal(M=5, load_dataset_split=str(tmp_path / "empty.pt"))
    torch.save({"train_indices": [0.5], "test_indices": [1]}, tmp_path / "float.pt")
    assert "train_indices must be integer row indices" in refusal(M=5, load_dataset_split=str(tmp_path / "float.pt"))
    torch.save({"train": [0]}, tmp_path / "keys.pt")
    assert "'train_indices' and 'test_indices'" in refusal(M=5, load_dataset_split=str(tmp_path / "keys.pt"))
    torch.save({"weight": torch.zeros(16, 9)}, tmp_path / "W.pt")
    assert "(16, 10)" in refusal(M=5, hidden_size=16, load_initial_layerab=str(tmp_path / "W.pt"))
    (tmp_path / "junk.pt").write_text("not a torch file")
    assert "load_initial_layerab" in refusal(M=5, hidden_size=16, load_initial_layerab=str(tmp_path / "junk.pt"))


def test_a_saved_split_and_initial_weights_are_loaded(tmp_path):
    torch.save({"train_indices": torch.tensor([3, 0, 7]), "test_indices": [1, 2, 24]}, tmp_path / "split.pt")
    data = ga.Task(build(M=5, load_dataset_split=str(tmp_path / "split.pt")), None).build_data()
    assert data.splits["train"]["x"].tolist() == [[0, 3], [0, 0], [1, 2]]
    assert data.splits["test"]["x"].tolist() == [[0, 1], [0, 2], [4, 4]] and data.facts["n_train"] == 3
    # a product group's indices count rows in the original's order: its row 1 is (0, element 2) of Z_2 x Z_3
    torch.save({"train_indices": [1], "test_indices": [6]}, tmp_path / "split6.pt")
    data = ga.Task(build(M="2x3", load_dataset_split=str(tmp_path / "split6.pt")), None).build_data()
    assert data.splits["train"]["x"].tolist() == [[0, 2]] and data.splits["test"]["x"].tolist() == [[2, 0]]
    weight = torch.randn(16, 10)
    torch.save({"weight": weight}, tmp_path / "W.pt")
    model = ga.Task(build(M=5, hidden_size=16, load_initial_layerab=str(tmp_path / "W.pt")), None).build_model(None)
    assert torch.equal(model.W.weight.detach(), weight)


def test_transformer_option_is_the_originals_encoder():
    s = build(M=7, model_type="transformer", hidden_size=16, nhead=2, num_layers=2, dim_feedforward=24,
              activation="relu", top_layer_init_multiplier=0.5)
    torch.manual_seed(3)
    model = ga.Task(s, None).build_model(None)
    torch.manual_seed(3)  # the original's modules, in its order
    embedding = torch.nn.Embedding(7, 16)
    positions = torch.nn.init.normal_(torch.zeros(1, 2, 16), std=0.02)
    encoder = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, batch_first=True),
                                          num_layers=2, enable_nested_tensor=False)
    V = torch.nn.Linear(16, 7, bias=False).weight * 0.5
    assert torch.equal(model.embedding.weight, embedding.weight) and torch.equal(model.positions, positions)
    x = torch.randint(0, 7, (12, 2))
    with torch.no_grad():
        encoder.load_state_dict({k[len("encoder."):]: v for k, v in model.state_dict().items()
                                 if k.startswith("encoder.")})
        expected = encoder(embedding(x) + positions).mean(dim=1) @ V.t()
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.equal(model.V.weight, V)


def test_help_settings_states_the_defaults_that_differ_from_the_original(capsys):
    assert main.main(["--help-settings", "--set", "task='group_arithmetic'"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert "default 0.01" in lines["lr"] and "the original's config default: 0.001" in lines["lr"]
    assert "default 23" in lines["M"] and "the original's default: 127" in lines["M"]
    assert "the original's" in lines["split_method"] and "seed + 2" in lines["init_seed_offset"]
    assert "default 'real'" in lines["complex_init"] and "the original's" in lines["complex_init"]


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("values, needle", [
    (dict(set_weight_reg=0.1), "set_weight_reg = 0.1 fits V by ridge regression"),
    (dict(set_weight_reg=0.1, loss_func="mse", use_complex_weights=True), "cannot go with use_complex_weights"),
    (dict(use_complex_weights=True, activation="relu"), "needs activation = 'sqr'"),
    (dict(use_complex_weights=True, optim="muon"), "optim = 'muon' orthogonalises real matrices"),
    (dict(use_critical_ratio=True, M=3), "none to test"),
    (dict(test_size=1.0), "no training examples"),
    (dict(test_size=0.0), "none to test"),
    (dict(group_type="modular_multiplication", M=8), "needs a prime M"),
    (dict(group_type="sym", M="2x3"), "for group_type 'modular_addition' only"),
    (dict(M="2xfoo"), "neither an integer nor a product"),
    (dict(group_type="sym", M=8), "more than 20,000,000"),
    (dict(group_type="expression", M=7), "needs expression"),
    (dict(expression="x+y"), "expression applies to group_type = 'expression'"),
    (dict(group_type="expression", M=7, expression="x+y", num_of_ops=3), "num_of_ops must be 2"),
    (dict(lr_schedule="multistep"), "needs lr_milestones"),
    (dict(group_type="modular_addtion"), "did you mean 'modular_addition'"),
    (dict(split_method="sklern"), "did you mean 'sklearn'"),
    (dict(complex_init="imaginary"), "complex_init"),
    (dict(first_layer_init="per-operand"), "first_layer_init"),
    (dict(init_seed_offset=-1), "init_seed_offset"),
    (dict(split_method="sklearn", test_size=0.0), "none to test"),
    (dict(model_type="transformer", use_complex_weights=True), "applies to model_type = 'mlp'"),
    (dict(model_type="transformer", hidden_size=30, nhead=4), "multiple of nhead = 4"),
    (dict(model_type="transformer", optim="muon"), "cannot go with model_type = 'transformer'"),
    (dict(model_type="transformer", normalize=True), "normalize applies to model_type = 'mlp'"),
    (dict(use_inner_product_act=True, use_bn=True), "use_bn cannot go with use_inner_product_act"),
    (dict(use_inner_product_act=True, optim="muon"), "cannot go with use_inner_product_act"),
    (dict(load_dataset_split="no/such.pt"), "load_dataset_split = 'no/such.pt': no such file"),
    (dict(load_initial_layerab="no/such.pt"), "load_initial_layerab = 'no/such.pt': no such file"),
])
def test_nonsensical_settings_are_refused_with_a_clear_message(values, needle):
    assert needle in refusal(**values)


def test_every_problem_is_reported_at_once():
    message = refusal(group_type="modular_multiplication", M=8, set_weight_reg=0.1, lr_schedule="multistep")
    assert "needs a prime M" in message and "set_weight_reg" in message and "lr_milestones" in message


def test_a_refused_run_never_starts(tmp_path, capsys):
    config = tmp_path / "bad.py"
    config.write_text("task = 'group_arithmetic'\nM = 7\nset_weight_reg = 0.1\nloss_func = 'nll'\n")
    assert main.main(["--config", str(config), "--results-path", "x"]) == 2
    assert "loss_func = 'mse'" in capsys.readouterr().err
    assert not Path("x").exists()


# ---------------------------------------------------------------- end to end

def test_tiny_run_end_to_end_through_main(tmp_path):
    config = write_settings(tmp_path / "tiny.py", {**BASE, "M": 7, "loss_func": "mse", "test_size": 0.3, "n_epochs": 4})
    assert main.main(["--config", str(config), "--results-path", "x"]) == 0
    run = RunDir("x")
    metrics, summary = run.read_metrics(), run.summary()
    assert [m["epoch"] for m in metrics] == [0, 1, 2, 3, 4]
    assert summary["data_facts"]["n_train"] == 34 and summary["data_facts"]["order"] == 7
    assert {"grokking_delay", "final_train_loss", "final_test_loss"} <= set(summary)
    assert summary["final_test_loss"] == metrics[-1]["test_loss"]
    assert settings.load(Path("x") / "config.py").M == 7  # the written config is a valid --config
    assert not (Path("x") / "checkpoint.pt").exists()


@pytest.mark.parametrize("name, extra", [
    ("ridge", dict(loss_func="mse", set_weight_reg=1e-3)),
    ("muon", dict(optim="muon", embed_trainable=True, lr=0.05)),
    ("complex", dict(use_complex_weights=True, optim="adamw", lr_schedule="cosine")),
    ("bn_sgd_relu", dict(use_bn=True, optim="sgd", activation="relu", lr=0.1, other_layers=1)),
    ("inner_product", dict(use_inner_product_act=True, first_layer_init="per_operand", normalize=True)),
    ("transformer", dict(model_type="transformer", nhead=4, num_layers=1, dim_feedforward=64, activation="relu",
                         lr=0.01)),
])
def test_model_variants_learn_a_small_table(tmp_path, name, extra):
    config = write_settings(tmp_path / f"{name}.py", {**BASE, "M": 5, "test_size": 0.2, "n_epochs": 40,
                                               "hidden_size": 32, "lr": 0.02} | extra)
    assert main.main(["--config", str(config), "--results-path", name]) == 0
    summary = RunDir(name).summary()
    assert summary["best_train_accuracy"] == 1.0, summary["final"]


@pytest.mark.parametrize("budget", [{"n_epochs": 5}, {"n_epochs": None, "n_steps": 5}])
def test_sweep_folder_plots(tmp_path, budget):
    # (a budget in steps has no n_epochs: the phase plot's 'never' marker goes at the epochs trained)
    base = write_settings(tmp_path / "base.py", {**BASE, "M": 7, "use_critical_ratio": True, **budget})
    assert sweep.main(["--base", str(base), "--vary", "critical_ratio_multiplier=1.0,2.0", "--executor",
                       "inprocess", "--yes"]) == 0
    written = ga.plot(tmp_path / "results_new" / "0", tmp_path / "plots")
    assert [p.name for p in written] == ["0_accuracy.png", "0_phase.png"]
    assert all(p.stat().st_size > 10_000 for p in written)
    # the programme's own report column: the grokking delay of each run, as in its summary
    rows = report.rows(tmp_path / "results_new" / "0")
    for row in rows:
        summary = RunDir(tmp_path / "results_new" / "0" / row["run"]).summary()
        assert "grokking_delay" in row and row["grokking_delay"] == summary["grokking_delay"]
    assert "grokking_delay" in report.format_table(rows).splitlines()[0]


def test_batch_norm_with_a_training_batch_of_one_row_is_refused_in_one_line(tmp_path, capsys):
    """BatchNorm1d in training mode raises on one row: batch_size 197 on 198 rows leaves a last batch of 1."""
    n = ga.Task(build(), None).build_data().train_size
    for batch_size, what in ((n - 1, "the last batch of each epoch"), (1, "every batch")):
        assert main.main(["--set", "task='group_arithmetic'", "--set", "hidden_size=8", "--set", "n_epochs=1",
                          "--set", "use_bn=True", "--set", f"batch_size={batch_size}", "--set", "progress='off'",
                          "--results-path", str(tmp_path / str(batch_size))]) == 1
        err = capsys.readouterr().err
        assert f"use_bn = True needs at least 2 rows in every training batch, but batch_size = {batch_size} on the " \
               f"{n} training rows leaves {what} with 1 row" in err and "Traceback" not in err
    small = next(b for b in (2, 3, 4) if n % b != 1)
    for batch_size in (0, n - 2, small):  # the full batch; a last batch of 2; small batches, none of 1 row
        main.run(build(use_bn=True, batch_size=batch_size, n_epochs=1, hidden_size=8), tmp_path / f"ok{batch_size}")
