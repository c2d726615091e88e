"""Knowledge-graph reasoning: the generators against brute-force definitions (functions, two-hop paths,
ID/OOD counts, phi, comparison labels), formats through the vocabulary, determinism, the JSON export,
parameter sharing in the model layer, the metrics against greedy decoding, and a tiny run end to end."""
import itertools
import json
from types import SimpleNamespace

import pytest
import torch

import decoders
import main
import models
import settings
from tasks import kg_reasoning as kg


pytestmark = pytest.mark.usefixtures("one_thread")


def rows(t):
    return {tuple(r) for r in t.tolist()}


def composition(E=30, R=6, D=4, ood=0.2, test=0.1, phi=1e9, seed=0):
    return kg.make_composition(E, R, D, ood, test, phi, seed)


def atomic_table(graph, E):
    """(h, r) -> (t, is_ood) from the atomic facts, with relations as indices."""
    table = {}
    for kind in ("id_atomic", "ood_atomic"):
        for h, r, t, _ in graph.types[kind].tolist():
            assert (h, r - E) not in table, "(h, r) -> t must be a function"
            table[(h, r - E)] = (t, kind == "ood_atomic")
    return table


# ---------------------------------------------------------------- composition

def test_atomic_facts_are_a_function_with_the_out_degree():
    E, R, D = 30, 6, 4
    graph = composition(E, R, D)
    table = atomic_table(graph, E)
    assert len(table) == E * D
    for h in range(E):
        relations = [r for (hh, r) in table if hh == h]
        assert len(relations) == D == len(set(relations)) and all(0 <= r < R for r in relations)
    assert all(0 <= t < E for t, _ in table.values())


def test_inferred_facts_are_exactly_the_two_hop_paths_by_id_and_ood():
    E, R, D = 30, 6, 4
    graph = composition(E, R, D, ood=0.2, test=0.1)
    table = atomic_table(graph, E)
    id_paths, ood_paths = set(), set()
    for (h, r1), (b, ood1) in table.items():
        for (bb, r2), (t, ood2) in table.items():
            if bb != b:
                continue
            fact = (h, E + r1, E + r2, t, graph.vocab.index("</a>"))
            if not ood1 and not ood2:
                id_paths.add(fact)
            elif ood1 and ood2:
                ood_paths.add(fact)
    train, test = rows(graph.types["train_inferred"]), rows(graph.types["test_inferred_id"])
    assert train | test == id_paths and not train & test
    assert rows(graph.types["test_inferred_ood"]) == ood_paths
    assert len(test) > 0 and len(ood_paths) > 0


def test_ood_share_and_phi_counts():
    E, D = 40, 5
    graph = composition(E, 8, D, ood=0.05, test=0.05, phi=3.6)
    assert len(graph.types["ood_atomic"]) == round(0.05 * E * D)
    n_id = len(graph.types["id_atomic"])
    assert n_id == E * D - round(0.05 * E * D)
    assert len(graph.types["train_inferred"]) == round(3.6 * n_id)
    assert graph.phi_actual == pytest.approx(round(3.6 * n_id) / n_id)
    # phi beyond the pool: the whole pool, and phi_actual says how much that is
    whole = composition(E, 8, D, ood=0.05, test=0.05, phi=1e6)
    assert len(whole.types["train_inferred"]) == whole.pool_size


def test_no_test_fact_or_query_appears_in_training():
    graph = composition(E=40, R=8, D=5, ood=0.1, test=0.2)
    training = graph.train_sequences()
    queries = {tuple(r[:3]) for r in training.tolist() if r[-1] != graph.vocab.index(kg.PAD)}
    for split in ("test_inferred_id", "test_inferred_ood"):
        for fact in graph.types[split].tolist():
            assert tuple(fact[:3]) not in queries


def test_same_seed_same_graph_other_seed_other_graph():
    a, b, c = composition(seed=3), composition(seed=3), composition(seed=4)
    for name in a.types:
        assert torch.equal(a.types[name], b.types[name])
    assert not torch.equal(a.types["id_atomic"], c.types["id_atomic"])


def test_the_test_sets_do_not_depend_on_phi():
    a, b = composition(phi=2.0), composition(phi=5.0)
    for name in ("id_atomic", "ood_atomic", "test_inferred_id", "test_inferred_ood"):
        assert torch.equal(a.types[name], b.types[name])


def test_the_scored_test_facts_do_not_depend_on_phi():
    # every split larger than the evaluation size, so each is subsampled; the trained pool grows with phi
    a, b = composition(E=60, D=6, ood=0.3, test=0.3, phi=2.0), composition(E=60, D=6, ood=0.3, test=0.3, phi=5.0)
    size = 40
    assert len(a.types["train_inferred"]) < len(b.types["train_inferred"])
    assert min(len(a.types[name]) for name in kg.ID_SPLITS) > size
    sa, sb = kg.evaluation_sets(a, size, 0), kg.evaluation_sets(b, size, 0)
    for name in ("id_atomic", "ood_atomic", "test_inferred_id", "test_inferred_ood"):
        assert torch.equal(sa[name], sb[name]), name
    assert rows(sa["train_inferred"]) <= rows(a.types["train_inferred"])
    assert not torch.equal(kg.evaluation_sets(a, size, 1)["test_inferred_id"], sa["test_inferred_id"])


def test_formats_round_trip_through_the_vocabulary():
    E, R = 30, 6
    graph = composition(E, R)
    vocab = graph.vocab
    assert vocab[:E] == [f"<e_{i}>" for i in range(E)] and vocab[E:E + R] == [f"<r_{j}>" for j in range(R)]
    assert len(vocab) == len(set(vocab))
    h, r1, r2, t, _ = graph.types["train_inferred"][0].tolist()
    text = kg.decode(graph.types["train_inferred"][0], vocab)
    assert text == f"<e_{h}><r_{r1 - E}><r_{r2 - E}><e_{t}></a>"
    for name, tensor in graph.types.items():
        for row in tensor[:20].tolist():
            assert kg.encode(kg.decode(row, vocab), vocab) == row
    with pytest.raises(ValueError):
        kg.encode("<e_1>junk", vocab)


# ---------------------------------------------------------------- comparison

def test_comparison_labels_splits_and_counts():
    E, A, V = 30, 3, 5
    graph = kg.make_comparison(E, A, V, 0.2, 0.25, 1e9, seed=1)
    vocab = graph.vocab
    values, ood = {}, {}
    for kind in ("id_atomic", "ood_atomic"):
        for e, a, v, end in graph.types[kind].tolist():
            assert vocab[end] == "</a>" and vocab[a].startswith("<attr_") and vocab[v] == f"<{v - E - A}>"
            values[(e, a - E)] = v - E - A
            ood[(e, a - E)] = kind == "ood_atomic"
    assert len(values) == E * A
    for a in range(A):
        assert sum(ood[(e, a)] for e in range(E)) == round(0.2 * E)
    seen = {}
    for split in ("train_inferred", "test_inferred_id", "test_inferred_ood"):
        for row in graph.types[split].tolist():
            text = kg.decode(row, vocab)
            attr, q, e1, m, e2, label, end = row
            a = attr - E
            assert (vocab[q], vocab[m], vocab[end]) == ("<q>", "<mask>", "</a>")
            v1, v2 = values[(e1, a)], values[(e2, a)]
            expected = 0 if v1 < v2 else 1 if v1 == v2 else 2
            assert vocab[label] == f"<attr_{a}_{expected}>", text
            kind = "ood" if ood[(e1, a)] and ood[(e2, a)] else "id" if not ood[(e1, a)] and not ood[(e2, a)] else "mixed"
            assert kind == ("ood" if split == "test_inferred_ood" else "id")
            seen[(a, e1, e2)] = split
    # every ordered pair of distinct same-kind entities appears once, both orders in the same split
    for a in range(A):
        for e1, e2 in itertools.permutations(range(E), 2):
            if ood[(e1, a)] == ood[(e2, a)]:
                assert seen[(a, e1, e2)] == seen[(a, e2, e1)]
            else:
                assert (a, e1, e2) not in seen
    n_id = len(graph.types["id_atomic"])
    small = kg.make_comparison(E, A, V, 0.2, 0.25, 2.0, seed=1)
    assert len(small.types["train_inferred"]) == round(2.0 * n_id)


@pytest.mark.parametrize("E, ood_entities", [(105, 11), (25, 3), (45, 5), (15, 1), (200, 20)])
def test_comparison_ood_entities_per_attribute_as_the_original_counts_them(E, ood_entities):
    """The original keeps round(0.9 * |E|) entities ID per attribute and makes the rest OOD: 11 of 105 where
    round(0.1 * 105) would give 10 (Python rounds 10.5 and 94.5 to even)."""
    graph = kg.make_comparison(E, 2, 3, 0.1, 0.1, 1.0, seed=0)
    assert len(graph.types["ood_atomic"]) == 2 * ood_entities


# ---------------------------------------------------------------- export, settings

def test_export_in_the_original_format(tmp_path):
    graph = composition()
    counts = kg.export_original(graph, tmp_path, eval_size=50)
    train = json.loads((tmp_path / "train.json").read_text())
    assert len(train) == counts["train.json"] == len(graph.train_sequences())
    item = train[-1]
    assert item["target_text"].startswith(item["input_text"]) and item["target_text"].endswith("</a>")
    probes = json.loads((tmp_path / "test.json").read_text())
    assert {p["type"] for p in probes} == {"id_atomic", "ood_atomic", "train_inferred", "test_inferred_iid",
                                           "test_inferred_ood"}
    valid = json.loads((tmp_path / "valid.json").read_text())
    ood = {kg.decode(r, graph.vocab) for r in graph.types["test_inferred_ood"].tolist()}
    assert {v["target_text"] for v in valid} <= ood  # as the original: valid.json is the OOD set
    assert "<pad>" not in json.loads((tmp_path / "vocab.json").read_text())
    conf = tmp_path / "kg.py"
    conf.write_text("task = 'kg_reasoning'\nkind = 'comparison'\nn_entities = 12\nn_attributes = 2\n")
    # every --set counts (the last one alone did, silently): phi and n_entities both
    assert kg.main([str(conf), str(tmp_path / "cli"), "--set", "phi=2.0", "--set", "n_entities=14"]) == 0
    train = json.loads((tmp_path / "cli" / "train.json").read_text())
    assert len(train) == 2 * 14 + round(2.0 * 2 * (14 - 1))  # all atomic + phi x |ID atomic|
    assert json.loads((tmp_path / "cli" / "test.json").read_text())[0]["target_text"].endswith("</a>")


def test_export_refuses_a_misspelled_setting_in_one_line(tmp_path, capsys):
    conf = tmp_path / "kg.py"
    conf.write_text("task = 'kg_reasoning'\n")
    assert kg.main([str(conf), str(tmp_path / "out"), "--set", "phii=2.0"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'phii'" in err and "did you mean 'phi'" in err and "Traceback" not in err


def test_settings_refuse_an_out_degree_above_the_relations():
    with pytest.raises(settings.SettingsError, match="out_degree"):
        settings.build(dict(task="kg_reasoning", n_relations=5, out_degree=6))


# ---------------------------------------------------------------- model layer: parameter sharing

def test_layer_repeats_runs_the_same_layers_again(tmp_path):
    spec = decoders.DecoderSpec(model="gpt2", vocab_size=17, max_positions=6, n_layer=2, n_head=2, n_embd=16,
                                head="lm")
    torch.manual_seed(0)
    once = models.build(spec)
    torch.manual_seed(0)
    twice = models.build(decoders.DecoderSpec(**{**spec.__dict__, "layer_repeats": 2}))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(once) == count(twice)
    assert len(twice.lm.transformer.h) == 4 and twice.lm.transformer.h[2] is twice.lm.transformer.h[0]
    twice.eval()
    x = torch.randint(17, (3, 6))
    # by hand: embeddings, the two layers twice, final norm, tied head
    lm = twice.lm.transformer
    hidden = lm.wte(x) + lm.wpe(torch.arange(6))
    for block in (lm.h[0], lm.h[1], lm.h[0], lm.h[1]):
        out = block(hidden)
        hidden = out[0] if isinstance(out, tuple) else out
    expected = twice.lm.lm_head(lm.ln_f(hidden))
    torch.testing.assert_close(twice(x), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(twice(x), once.eval()(x))
    assert decoders.check(decoders.DecoderSpec(**{**spec.__dict__, "layer_repeats": 0}))
    assert "layer_repeats" in " ".join(decoders.check(decoders.DecoderSpec(**{**spec.__dict__, "head": "classifier",
                                                                              "layer_repeats": 2})))
    decoders.save_model(twice, tmp_path / "saved")
    again = decoders.load_model(tmp_path / "saved")
    assert again.lm.transformer.h[3] is again.lm.transformer.h[1]
    torch.testing.assert_close(again(x), twice(x))


# ---------------------------------------------------------------- the task

TINY = dict(task="kg_reasoning", n_entities=12, n_relations=4, out_degree=3, test_share=0.2, ood_share=0.2, phi=3.0,
            n_layer=1, n_head=2, n_embd=16, batch_size=32, n_steps=6, warmup_steps=2, eval_every_steps=3,
            eval_size=40, progress="off")


def test_metrics_are_the_greedy_answer_and_the_loss_covers_the_targets_only():
    s = settings.build(TINY)
    task = kg.Task(s, log=None)
    data = task.build_data()
    torch.manual_seed(0)
    model = models.build(s.model_spec()).eval()
    with torch.inference_mode():
        for name, split in data.splits.items():
            tokens = split["tokens"]
            w = tokens.shape[1]
            result = task.evaluate_batch(model, split)
            # greedy decoding of two tokens after the input, one position at a time
            seq = tokens[:, :w - 2]
            for _ in range(2):
                seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
            assert int(result["accuracy"][0]) == int((seq[:, -2] == tokens[:, -2]).sum())
            assert int(result["exact_match"][0]) == int((seq[:, -2:] == tokens[:, -2:]).all(1).sum())
        batch = {k: v[:50] for k, v in data.train.items()}
        labels = batch["labels"]
        pad = task.graph.vocab.index(kg.PAD)
        kept = labels != -100
        assert torch.equal(kept.sum(1), torch.full((50,), 2))  # answer and </a> of every fact
        assert torch.equal(labels[kept], batch["tokens"][kept]) and not (batch["tokens"][kept] == pad).any()
        logits = model(batch["tokens"])
        manual = torch.nn.functional.cross_entropy(logits[:, :-1][kept[:, 1:]], labels[:, 1:][kept[:, 1:]])
        torch.testing.assert_close(task.training_loss(model, batch), manual)


def test_a_tiny_run_end_to_end(tmp_path):
    for index, kind in enumerate(("composition", "comparison")):
        run_dir = tmp_path / "sweep" / str(index)
        main.run(settings.build({**TINY, "kind": kind, "n_entities": 10, "n_attributes": 2, "n_values": 3}), run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        final = summary["final"]
        for split in kg.ID_SPLITS:
            for metric in ("accuracy", "exact_match", "loss"):
                assert f"{split}_{metric}" in final
        assert "valid" not in " ".join(final)
        assert {"train_fit_step", "grokking_gap_0.9", "generator_version"} <= set(summary)
        # report.py shows how many facts each test accuracy counts (the spec: counts with accuracies)
        sizes = summary["data_facts"]["eval_split_sizes"]
        assert [summary[f"facts_{n}"] for n in ("test_inferred_id", "test_inferred_ood")] == \
            [sizes.get("test_inferred_id", 0), sizes.get("test_inferred_ood", 0)]
        assert {"facts_test_inferred_id", "facts_test_inferred_ood"} <= set(summary["report_columns"])
        # comparison's 0.5 is about what a constant answer scores: its report shows 0.75 instead
        threshold = "0.5" if kind == "composition" else "0.75"
        assert f"first_step_test_inferred_id_accuracy_{threshold}" in summary["report_columns"]
        task = kg.Task(settings.build({**TINY, "kind": kind}), log=None)
        reached = task.extra_summary(SimpleNamespace(facts={}), [{"step": 7, "test_inferred_id_accuracy": 0.8}])
        assert reached["first_step_test_inferred_id_accuracy_0.5"] == 7
        assert reached.get("first_step_test_inferred_id_accuracy_0.75") == (7 if kind == "comparison" else None)
        # budgeted in steps, counted in steps: the best accuracies' and report.py's first column too (they were
        # fractional epochs beside first_step_* and train_fit_step)
        assert summary["counted_in"] == "step" and summary["best_test_inferred_id_accuracy_step"] in (0, 3, 6)
        assert not [k for k in summary if k.endswith("_epoch") or k.startswith("first_epoch")]
        log = (run_dir / "logs.log").read_text()
        assert "test_inferred_ood" in log and "eval_split_sizes" in log
        assert summary["steps"] == 6
    import report
    rows = report.rows(tmp_path / "sweep")
    assert [r.get("step") for r in rows] == [6, 6] and not any("epoch" in r for r in rows)
    pngs = kg.plot(tmp_path / "sweep", tmp_path)
    assert sorted(p.name for p in pngs) == ["kg_reasoning_run_0.png", "kg_reasoning_run_1.png",
                                            "kg_reasoning_sweep_kind.png"]
    assert all(p.stat().st_size > 1000 for p in pngs)


@pytest.mark.parametrize("kind", ["composition", "comparison"])
def test_a_split_the_settings_leave_empty_is_not_evaluated(tmp_path, kind):
    """ood_share = 0 makes no OOD fact and test_share = 0 no held-out ID fact: the run trains and scores the
    other splits (an empty split crashed the model's forward) and its data facts say which were left out."""
    for index, (values, empty) in enumerate([(dict(ood_share=0.0), {"ood_atomic", "test_inferred_ood"}),
                                             (dict(test_share=0.0), {"test_inferred_id"})]):
        run_dir = tmp_path / str(index)
        main.run(settings.build({**TINY, "kind": kind, "n_entities": 10, "n_attributes": 2, "n_values": 3,
                                 **values}), run_dir)
        final = json.loads((run_dir / "summary.json").read_text())["final"]
        scored = {name for name in kg.ID_SPLITS if f"{name}_accuracy" in final}
        assert scored and not scored & empty, (scored, empty)
        assert "empty_splits: " + ", ".join(sorted(empty)) in (run_dir / "logs.log").read_text()


def test_train_fit_step_needs_only_the_trained_splits_there_are():
    task = kg.Task(settings.build(TINY), log=None)
    data = SimpleNamespace(facts={})
    both = [{"step": 10, "train_inferred_accuracy": 0.5, "id_atomic_accuracy": 1.0},
            {"step": 20, "train_inferred_accuracy": 1.0, "id_atomic_accuracy": 1.0}]
    assert task.extra_summary(data, both)["train_fit_step"] == 20
    # phi = 0: no inferred training facts, so no train_inferred split; fitting the atomic facts is fitting
    atomic_only = [{"step": 10, "id_atomic_accuracy": 0.5}, {"step": 20, "id_atomic_accuracy": 0.995}]
    assert task.extra_summary(data, atomic_only)["train_fit_step"] == 20
    assert task.extra_summary(data, [{"step": 10, "test_inferred_ood_accuracy": 1.0}])["train_fit_step"] is None


def test_a_phi_beyond_the_graph_s_pool_is_said_in_the_log(tmp_path):
    """A small graph cannot give phi = 18 (the spec's CPU note); the run says what phi it trains at instead of
    only recording phi_actual among the data facts."""
    main.run(settings.build({**TINY, "phi": 18.0}), tmp_path / "short")
    log = (tmp_path / "short" / "logs.log").read_text()
    facts = json.loads((tmp_path / "short" / "summary.json").read_text())["data_facts"]
    assert facts["phi_actual"] < 18
    assert "note: phi = 18.0 asks for" in log and f"all taken: phi is {facts['phi_actual']:.4g} here" in log
    main.run(settings.build({**TINY, "phi": 1.0}), tmp_path / "enough")
    assert "asks for" not in (tmp_path / "enough" / "logs.log").read_text()


def test_a_sweep_over_graph_sizes_is_plotted_per_epoch_and_others_per_step(tmp_path, monkeypatch):
    """The paper compares |E| at fixed phi with epochs on the x axis (a larger graph's epoch has more steps)."""
    for index, n_entities in enumerate((10, 14)):
        main.run(settings.build({**TINY, "n_entities": n_entities}), tmp_path / "sizes" / str(index))
    for index, phi in enumerate((2.0, 3.0)):
        main.run(settings.build({**TINY, "phi": phi}), tmp_path / "phis" / str(index))
    drawn = []
    panel = kg._panel
    monkeypatch.setattr(kg, "_panel", lambda ax, records, title, x="step": (drawn.append(x),
                                                                           panel(ax, records, title, x)))
    kg.plot(tmp_path / "sizes", tmp_path)
    assert drawn == ["step", "step", "epoch", "epoch"]  # each run's own plot, then the sweep's panels
    drawn.clear()
    kg.plot(tmp_path / "phis", tmp_path)
    assert drawn == ["step"] * 4


def test_a_run_s_plot_names_the_phi_it_trained_at_where_the_pool_fell_short(tmp_path):
    main.run(settings.build({**TINY, "phi": 18.0}), tmp_path / "short")
    actual = json.loads((tmp_path / "short" / "summary.json").read_text())["data_facts"]["phi_actual"]
    assert kg._phi(tmp_path / "short", {"phi": 18.0}) == f"18.0 (trained at {actual:g})"
    main.run(settings.build({**TINY, "phi": 1.0}), tmp_path / "enough")
    assert kg._phi(tmp_path / "enough", {"phi": 1.0}) == "1.0"


def test_report_counts_a_kg_run_in_progress_in_steps_as_its_finished_siblings(tmp_path):
    """A run without a summary yet (training, or stopped) has no counted_in: its programme's unit serves, so one
    table does not mix fractional epochs with steps."""
    import report
    from results import RunDir
    main.run(settings.build(TINY), tmp_path / "sweep" / "0")
    RunDir(tmp_path / "sweep" / "0").file("summary.json").unlink()  # as a run in progress has none
    RunDir(tmp_path / "sweep" / "0").set_status("interrupted")
    row = report.rows(tmp_path / "sweep")[0]
    assert row["step"] == 6 and "epoch" not in row
