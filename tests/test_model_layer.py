"""The model layer as tasks use it: every kind built from its spec through models.build, models.check's
refusals, the tasks' specs, and the causal-LM head (logits, attention maps, lm_loss, tied embeddings,
GPT-2's parameter count, bf16, saving).

Expected values come from independent definitions written here (a per-position cross-entropy loop,
attention recomputed from GPT-2's weights, GPT-2's parameter formula, transformers' own LM loss),
never from the code under test.
"""
import math
import os
import pickle
import signal
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import attention_only
import decoders
import group_mlp
import models
import settings
import tiny_checkpoints
from models import AttentionOnlySpec, DecoderSpec, GroupMLPSpec, ModelConfigError

SEQ = 16


def gpt2_spec(**kw):
    return DecoderSpec(**{**dict(model="gpt2", vocab_size=11, max_positions=SEQ, n_layer=2, n_head=4, n_embd=32,
                                 head="lm"), **kw})


def seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


def same_parameters(a, b):
    pa, pb = list(a.named_parameters()), list(b.named_parameters())
    return [n for n, _ in pa] == [n for n, _ in pb] and all(torch.equal(x, y) for (_, x), (_, y) in zip(pa, pb))


# ---------------------------------------------------------------- each kind from its spec

@pytest.mark.parametrize("num_models", [1, 2])
def test_a_classifier_spec_builds_what_the_keyword_form_builds(num_models):
    sizes = dict(n_layer=1, n_head=2, n_embd=16)
    spec = DecoderSpec(model="bloom", vocab_size=3, max_positions=SEQ, num_models=num_models, **sizes)
    built = seeded(lambda: models.build(spec))
    by_keywords = seeded(lambda: models.build_classifier("bloom", 3, SEQ, num_models=num_models, **sizes))
    assert type(built) is type(by_keywords)
    assert isinstance(built, models.SequenceClassifier if num_models == 1 else models.EnsembleClassifier)
    assert same_parameters(built, by_keywords)  # same parameters, same RNG draws
    assert built.training and built.spec == spec
    ids = torch.randint(0, 3, (4, 9))
    assert built(ids).shape == (4,)
    assert not same_parameters(built, seeded(lambda: models.build(spec), seed=1))


def test_a_group_mlp_spec_builds_the_network_it_names():
    spec = GroupMLPSpec(n_classes=7, num_of_ops=3, hidden_size=12, activation="relu", other_layers=2,
                        embed_trainable=True, use_bn=True, top_layer_init_multiplier=0.5)
    model = seeded(lambda: models.build(spec))
    direct = seeded(lambda: group_mlp.GroupMLP(7, 3, 12, activation="relu", other_layers=2, embed_trainable=True,
                                               use_bn=True, top_layer_init_multiplier=0.5))
    assert isinstance(model, group_mlp.GroupMLP) and same_parameters(model, direct)
    assert model.W.weight.shape == (12, 21) and model.V.weight.shape == (7, 12)
    assert len(model.layers) == 2 and model.bn is not None and model.embedding.weight.requires_grad
    assert model(torch.randint(0, 7, (5, 3))).shape == (5, 7)
    ridge = models.build(GroupMLPSpec(n_classes=5, set_weight_reg=0.1, hidden_size=4))
    assert ridge.ridge_lambda == 0.1 and not ridge.V.weight.requires_grad
    complex_net = models.build(GroupMLPSpec(n_classes=5, hidden_size=4, use_complex_weights=True))
    assert complex_net.W.weight.is_complex() and not complex_net(torch.randint(0, 5, (3, 2))).is_complex()


@pytest.mark.parametrize("fields", [
    dict(N=20, d=8, H=3),                                         # the AoT, no compress maps
    dict(N=20, d=8, d_h=4, H=3, nb_layers=2, context_window=2),  # compress/decompress shared by layers
    dict(N=20, d=8, H=1, W=12, nb_layers=2),                      # the MLP variant
])
def test_an_attention_only_spec_builds_the_transformer_and_counts_its_parameters(fields):
    spec = AttentionOnlySpec(**fields)
    model = seeded(lambda: models.build(spec))
    direct = seeded(lambda: attention_only.MemoryTransformer(
        spec.N, spec.d, spec.d_h or spec.d, spec.H, W=spec.W, nb_layers=spec.nb_layers,
        context_window=spec.context_window))
    assert isinstance(model, attention_only.MemoryTransformer) and same_parameters(model, direct)
    assert (model.mlp is not None) == (spec.W > 0)
    assert sum(p.numel() for p in model.parameters()) == spec.parameter_count()
    tokens = torch.randint(0, spec.N, (4, 2))
    assert model(tokens).shape == (4, spec.N)


@pytest.mark.parametrize("values, kind", [
    (dict(task="target_functions"), DecoderSpec),
    (dict(task="group_arithmetic", M=7), GroupMLPSpec),
    (dict(task="assoc_memory", model="transformer", W=6), AttentionOnlySpec),
])
def test_each_task_states_one_spec_that_checks_and_builds(values, kind):
    import tasks

    s = settings.build(values)
    spec = s.model_spec()
    assert type(spec) is kind and models.check(spec) == []
    task = tasks.get(values["task"])(s, type("Log", (), {"info": lambda *a: None})())
    built = seeded(lambda: task.build_model(task.build_data()))
    assert same_parameters(built, seeded(lambda: models.build(spec)))


def test_task_specs_carry_the_settings():
    assert settings.build(dict(task="group_arithmetic", group_type="sym", M=4)).model_spec().n_classes == 24
    s = settings.build(dict(task="assoc_memory", N=9, d=6, d_h=3, H=2, nb_layers=2))
    assert s.model_spec() == AttentionOnlySpec(N=9, d=6, d_h=3, H=2, W=0, nb_layers=2, context_window=3)
    s = settings.build(dict(task="target_functions", target_func="func10", sequence_length=12, n_layer=1))
    spec = s.model_spec()
    assert (spec.model, spec.max_positions, spec.n_layer, spec.head) == ("bloom", 14, 1, "classifier")


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("spec, words", [
    (DecoderSpec(model="gtp2", vocab_size=3, max_positions=8), ["model = 'gtp2' is unknown", "Did you mean 'gpt2'"]),
    (DecoderSpec(model="gpt2", vocab_size=3, max_positions=8, head="decoder"), ["head='decoder'", "'lm'"]),
    (DecoderSpec(model="gpt2", vocab_size=3, max_positions=8, n_embd=30, n_head=4), ["n_embd=30", "n_head=4"]),
    (DecoderSpec(model="gpt2", vocab_size=0, max_positions=8), ["vocab_size=0", "positive"]),
    (gpt2_spec(num_models=2), ["num_models=2", "head='classifier'"]),
    (gpt2_spec(pooling="mean"), ["pooling='mean'", "every position"]),
    (gpt2_spec(pretrained_path="/some/where"), ["head='lm' is built from scratch", "pretrained_path"]),
    (gpt2_spec(model="qwen3_finetune"), ["head='lm' is built from scratch", "*_finetune"]),
    (DecoderSpec(model="gpt2", vocab_size=3, max_positions=8, tie_embeddings=False), ["tie_embeddings=False",
                                                                                      "head='lm'"]),
    (gpt2_spec(tie_embeddings="yes"), ["tie_embeddings='yes'"]),
    (GroupMLPSpec(n_classes=5, activation="gelu"), ["activation = 'gelu' is not one of"]),
    (GroupMLPSpec(n_classes=0), ["n_classes = 0 must be an integer >= 1"]),
    (GroupMLPSpec(n_classes=5, use_complex_weights=True, activation="relu"), ["needs activation = 'sqr'"]),
    (GroupMLPSpec(n_classes=5, use_complex_weights=True, use_bn=True), ["use_bn cannot go with use_complex_weights"]),
    (GroupMLPSpec(n_classes=5, set_weight_reg=0.1, use_complex_weights=True), ["real ridge regression"]),
    (GroupMLPSpec(n_classes=5, set_weight_reg=0.1, output_multiplier=2.0), ["output_multiplier cannot go"]),
    (GroupMLPSpec(n_classes=5, set_weight_reg=-1.0), ["set_weight_reg = -1.0"]),
    (AttentionOnlySpec(N=10, d=4, H=0), ["H = 0 must be an integer >= 1"]),
    (AttentionOnlySpec(N=10, d=4, H=2, d_h=0), ["d_h = 0", "or None"]),
    (AttentionOnlySpec(N=10, d=4, H=2, W=-1), ["W = -1 must be an integer >= 0"]),
])
def test_check_refuses_with_a_message_naming_the_field_and_build_raises_it(spec, words):
    problems = models.check(spec)
    assert problems
    for word in words:
        assert any(word in p for p in problems), (word, problems)
    with pytest.raises(ModelConfigError) as info:
        models.build(spec)
    assert all(word in str(info.value) for word in words)


def test_check_reports_every_independent_problem_at_once():
    problems = models.check(DecoderSpec(model="gpt2", vocab_size=3, max_positions=8, pooling="max", dropout=1.5,
                                        num_models=0))
    assert len(problems) == 3
    assert any("pooling='max'" in p for p in problems) and any("dropout=1.5" in p for p in problems)
    assert any("num_models=0" in p for p in problems)
    assert len(models.check(GroupMLPSpec(n_classes=5, use_complex_weights=True, activation="relu", use_bn=True))) == 2


def test_check_builds_no_weights(monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("check built a model")

    for auto in (transformers.AutoModel, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(auto, "from_config", refuse)
    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)
    assert models.check(DecoderSpec(model="qwen1.7B", vocab_size=151_936, max_positions=4096)) == []
    assert models.check(DecoderSpec(model="llama3", vocab_size=3, max_positions=8, head="lm")) == []
    assert models.check(GroupMLPSpec(n_classes=120, hidden_size=4096)) == []
    assert models.check(AttentionOnlySpec(N=100, d=64, H=64)) == []


def test_a_non_spec_is_a_type_error():
    with pytest.raises(TypeError, match="not a model spec"):
        models.check({"model": "gpt2"})
    with pytest.raises(TypeError, match="DecoderSpec"):
        models.build("gpt2")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints.write(tmp_path_factory.mktemp("checkpoints"))


def test_check_reads_the_checkpoint_config_before_any_job_starts(checkpoints, tmp_path):
    qwen, _ = checkpoints["qwen3"]
    spec = DecoderSpec(model="qwen3_finetune", vocab_size=3, max_positions=8, pretrained_path=str(qwen))
    assert models.check(spec) == []
    problems = models.check(DecoderSpec(model="llama3_finetune", vocab_size=3, max_positions=8,
                                        pretrained_path=str(qwen)))
    assert problems == [f"pretrained_path={str(qwen)!r} holds a qwen3 model, but model='llama3_finetune' expects llama."]
    problems = models.check(DecoderSpec(model="qwen3_finetune", vocab_size=99, max_positions=8, finetune_layers=7,
                                        pretrained_path=str(qwen)))
    assert len(problems) == 2 and "vocab_size=99" in problems[0] and "finetune_layers=7" in problems[1]
    assert "is not a folder" in models.check(DecoderSpec(model="qwen3_finetune", vocab_size=3, max_positions=8,
                                                         pretrained_path=str(tmp_path / "nowhere")))[0]
    # and so do the settings: the wrong family is refused when the settings are read
    with pytest.raises(settings.SettingsError, match="holds a qwen3 model"):
        settings.build(dict(task="target_functions", model="llama3_finetune", pretrained_path=str(qwen)))
    # a folder that is not a model's: a config.json that is no model's, or not JSON, or no weights beside it
    import shutil
    for name, text, words in [("no_type", '{"foo": 1}', "its config.json is not a model's (Unrecognized model"),
                              ("not_json", "not json", "its config.json is not a model's"),
                              ("no_weights", (qwen / "config.json").read_text(), "holds no weights")]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(text)
        problems = models.check(DecoderSpec(model="qwen3_finetune", vocab_size=3, max_positions=8,
                                            pretrained_path=str(folder)))
        assert len(problems) == 1 and words in problems[0] and "\n" not in problems[0], problems
    shutil.copytree(qwen, tmp_path / "whole")
    assert models.check(DecoderSpec(model="qwen3_finetune", vocab_size=3, max_positions=8,
                                    pretrained_path=str(tmp_path / "whole"))) == []


def test_models_still_resolves_the_pickled_bloom_block_name():
    cls = pickle.loads(b"cmodels\nLastPositionBloomBlock\n.")  # a reference written before decoders.py existed
    assert cls is decoders.LastPositionBloomBlock and cls.__module__ == "decoders"


# ---------------------------------------------------------------- the causal-LM head

def test_lm_loss_is_the_cross_entropy_of_the_kept_next_tokens():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 7)
    labels = torch.randint(0, 7, (3, 6))
    labels[0, :3] = -100  # a prompt
    labels[2, 4:] = -100  # padding
    terms = [-F.log_softmax(logits[b, t], dim=-1)[labels[b, t + 1]]
             for b in range(3) for t in range(5) if labels[b, t + 1] != -100]
    assert len(terms) == 3 * 5 - 2 - 2
    torch.testing.assert_close(models.lm_loss(logits, labels, reduction="sum"), torch.stack(terms).sum())
    torch.testing.assert_close(models.lm_loss(logits, labels), torch.stack(terms).mean())
    # the first position's label is never scored (nothing predicts it)
    changed = labels.clone()
    changed[:, 0] = (labels[:, 0] + 1) % 7
    assert torch.equal(models.lm_loss(logits, changed), models.lm_loss(logits, labels))
    # nothing kept: 0, not NaN
    assert models.lm_loss(logits, torch.full_like(labels, -100)).item() == 0.0
    assert models.lm_loss(logits.bfloat16(), labels).dtype == torch.float32
    with pytest.raises(ValueError, match="reduction"):
        models.lm_loss(logits, labels, reduction="none")


def test_lm_loss_is_the_loss_transformers_computes_from_the_same_labels():
    model = seeded(lambda: models.build(gpt2_spec())).eval()
    ids = torch.randint(0, 11, (4, 9))
    labels = ids.clone()
    labels[:, :4] = -100
    theirs = model.lm(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(models.lm_loss(model(ids), labels), theirs)


@pytest.mark.parametrize("name", ["gpt2", "qwen0.6B", "llama3", "bloom"])
def test_lm_head_returns_float32_logits_at_every_position_and_learns(name):
    kv = {} if name in ("gpt2", "bloom") else {"n_kv_head": 2}
    model = seeded(lambda: models.build(gpt2_spec(model=name, **kv)))
    assert isinstance(model, models.CausalLM) and model.training
    ids = torch.randint(0, 11, (3, 8))
    logits = model(ids)
    assert logits.shape == (3, 8, 11) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    loss = models.lm_loss(logits, ids)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # causal: changing the last token changes no earlier position's logits
    later = ids.clone()
    later[:, -1] = (ids[:, -1] + 1) % 11
    model.eval()
    torch.testing.assert_close(model(later)[:, :-1], model(ids)[:, :-1])


def _rows_into_last_mlp(model, call):
    """(call's result, the number of positions the last block's MLP computed)."""
    seen = []
    handle = model.lm.transformer.h[-1].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    try:
        return call(), seen
    finally:
        handle.remove()


@pytest.mark.parametrize("dropout, dtype", [(0.0, torch.float32), (0.1, torch.float32), (0.1, torch.bfloat16)])
def test_selected_positions_are_the_full_forwards_and_only_they_are_computed(dropout, dtype):
    """positions=slice(a, b) on GPT-2: the last block's MLP runs on b - a positions; the logits equal the
    full forward's at those positions, bit for bit (evaluation, and training with dropout under the same
    seed, which leaves the random stream where the full forward leaves it); the gradients equal the full
    forward's to float summation order."""
    model = seeded(lambda: models.build(gpt2_spec(dropout=dropout))).to(dtype)
    ids = torch.randint(0, 11, (5, SEQ))
    rows = slice(9, 15)
    for mode in (model.eval, model.train):
        mode()
        torch.manual_seed(1)
        full, lengths = _rows_into_last_mlp(model, lambda: model(ids))
        full, after_full = full[:, rows], torch.get_rng_state()
        assert lengths == [SEQ]
        torch.manual_seed(1)
        chosen, lengths = _rows_into_last_mlp(model, lambda: model(ids, positions=rows))
        assert lengths == [6] and chosen.shape == (5, 6, 11) and chosen.dtype == torch.float32
        assert torch.equal(chosen, full)
        assert torch.equal(torch.get_rng_state(), after_full)
    if dropout:  # the masks differ between two draws, so the equality above compared the same masks
        torch.manual_seed(2)
        assert not torch.equal(model(ids, positions=rows), full)
    assert_selected_gradients_are_the_full_forwards(model, ids, rows, dtype, lambda: torch.manual_seed(1))


def assert_selected_gradients_are_the_full_forwards(model, ids, rows, dtype, same_masks):
    """The gradients through the selected rows equal those through the full forward's rows (same_masks()
    before each call makes them draw the same dropout masks) to float summation order."""
    weights = torch.randn(len(ids), rows.stop - rows.start, 11)
    params = list(model.parameters())
    same_masks()
    ours = torch.autograd.grad((model(ids, positions=rows) * weights).sum(), params)
    same_masks()
    theirs = torch.autograd.grad((model(ids)[:, rows] * weights).sum(), params)
    assert all(g.abs().sum() > 0 for g in ours)
    for a, b in zip(ours, theirs):
        if dtype == torch.float32:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        else:  # bf16 gradients: 8 significant bits
            torch.testing.assert_close(a, b, rtol=2 ** -6, atol=2 ** -6 * b.abs().max().item())


def _pcg64_mask_by_definition(key, call, site, shape, dim, keep):
    """counter_keep_mask's documented rule, written out: the whole tensor's mask in position-major order
    from one PCG64 stream from its start, each 64-bit output's low 32-bit word first."""
    n = math.prod(shape)
    raw = np.random.PCG64(np.random.SeedSequence([key, call, site])).random_raw((n + 1) // 2)
    words = np.stack([raw & 0xFFFFFFFF, raw >> 32], axis=1).reshape(-1)[:n]
    kept = torch.from_numpy(words < round(keep * 2 ** 32))
    moved = (shape[dim],) + shape[:dim] + shape[dim + 1:]
    return kept.view(moved).movedim(0, dim)


@pytest.mark.parametrize("shape, dim", [((5, 27, 13), 1), ((6, 2, 9, 9), 2)])
def test_counter_noise_is_the_same_function_of_place_and_call_for_any_rows_and_threads(shape, dim, monkeypatch):
    whole = _pcg64_mask_by_definition(7, 3, 2, shape, dim, 0.9)
    assert whole.shape == shape
    monkeypatch.setattr(decoders, "_NOISE_PIECE", 7)  # split even these small tensors over the threads
    for threads in (1, 3):
        torch.set_num_threads(threads)
        for rows in (slice(None), slice(0, 1), slice(3, shape[dim] - 1), slice(shape[dim] - 1, shape[dim])):
            part = decoders.counter_keep_mask(7, 3, 2, shape, dim, rows, 0.9)
            assert torch.equal(part, whole[(slice(None),) * dim + (rows,)]), (threads, rows)
    torch.set_num_threads(1)
    for other in [(8, 3, 2), (7, 4, 2), (7, 3, 3)]:  # another key, call or site: other masks
        assert not torch.equal(decoders.counter_keep_mask(*other, shape, dim, slice(None), 0.9), whole)
    big = decoders.counter_keep_mask(1, 0, 0, (100, 1000), 1, slice(None), 0.75)
    assert abs(big.float().mean().item() - 0.75) < 0.005  # 12 standard deviations of a fair coin's mean
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):  # the noise as torch's dropout has it
        noise = decoders.counter_keep_mask(7, 3, 2, shape, dim, slice(1, 4), 0.9, dtype)
        kept = whole[(slice(None),) * dim + (slice(1, 4),)]
        assert noise.dtype == dtype and torch.equal(noise, kept.to(dtype).div_(0.9))


def test_counter_noise_draws_in_a_forked_child_as_in_its_parent(monkeypatch):
    """The threads that draw the noise do not survive a fork: a child (a worker forked after a run drew
    noise) gets its own, and the same masks, instead of waiting for threads that are gone."""
    monkeypatch.setattr(decoders, "_NOISE_PIECE", 7)
    torch.set_num_threads(2)
    try:
        parent = decoders.counter_keep_mask(1, 2, 3, (4, 27, 8), 1, slice(None), 0.9)
        assert decoders._noise_pool is not None
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 when its mask is the parent's
            same = torch.equal(decoders.counter_keep_mask(1, 2, 3, (4, 27, 8), 1, slice(None), 0.9), parent)
            os._exit(0 if same else 1)
        for _ in range(600):  # up to 60 s
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung drawing dropout noise")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_counter_noise_selected_positions_are_the_full_forwards_and_resume_exactly(dtype):
    """dropout_noise='counter': in training the selected rows equal the model's full (written-out) forward at
    those rows under the same training call, whatever torch's generator holds (it draws nothing from it);
    each call draws new masks; the call count is model state, so a model loaded from a state dict makes the
    next call's masks."""
    spec = gpt2_spec(dropout=0.1, dropout_noise="counter", n_layer=2)
    model = seeded(lambda: models.build(spec), seed=5).to(dtype)
    assert int(model.dropout_key) == 5 and int(model.dropout_calls) == 0
    ids = torch.randint(0, 11, (5, SEQ))
    rows = slice(9, 15)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    chosen, lengths = _rows_into_last_mlp(model, lambda: model(ids, positions=rows))
    assert lengths == [6] and torch.equal(torch.get_rng_state(), state)
    model.dropout_calls.zero_()
    torch.manual_seed(2)
    full, lengths = _rows_into_last_mlp(model, lambda: model(ids))
    assert lengths == [SEQ] and int(model.dropout_calls) == 1
    assert torch.equal(chosen, full[:, rows])
    again = model(ids, positions=rows)  # call 1: other masks
    assert not torch.equal(again, chosen)
    model.eval()
    clean = model(ids)
    model.train()
    assert not torch.equal(full, clean)  # dropout was on
    restored = seeded(lambda: models.build(spec), seed=9).to(dtype)
    restored.load_state_dict(model.state_dict())
    assert int(restored.dropout_key) == 5 and int(restored.dropout_calls) == 2
    assert torch.equal(restored(ids, positions=rows), model(ids, positions=rows))
    assert_selected_gradients_are_the_full_forwards(model, ids, rows, dtype, lambda: model.dropout_calls.fill_(7))


def test_counter_noise_without_dropout_or_on_other_models_is_refused_or_absent():
    assert not hasattr(models.build(gpt2_spec(dropout_noise="counter")), "dropout_calls")  # dropout 0: no masks
    assert any("dropout_noise" in p for p in models.check(gpt2_spec(model="llama3", n_kv_head=2,
                                                                     dropout_noise="counter")))
    assert any("dropout_noise" in p for p in models.check(gpt2_spec(dropout_noise="philox")))


def test_selected_positions_of_other_models_are_the_full_forward_sliced():
    model = seeded(lambda: models.build(gpt2_spec(model="llama3", n_kv_head=2))).eval()
    ids = torch.randint(0, 11, (3, 9))
    assert torch.equal(model(ids, positions=slice(2, 5)), model(ids)[:, 2:5])


def _layer0_attention_by_hand(model, ids):
    """GPT-2's first attention map from its weights: softmax(q k^T / sqrt(d_head) + causal mask)."""
    gpt = model.lm.transformer
    x = gpt.wte(ids) + gpt.wpe(torch.arange(ids.shape[1]))
    h = gpt.h[0].ln_1(x)
    q, k, _ = (h @ gpt.h[0].attn.c_attn.weight + gpt.h[0].attn.c_attn.bias).split(x.shape[-1], dim=-1)
    heads = gpt.config.n_head
    q, k = (t.view(*ids.shape, heads, -1).transpose(1, 2) for t in (q, k))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    T = ids.shape[1]
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


def test_attention_maps_on_request_are_causal_distributions_and_the_models_own():
    model = seeded(lambda: models.build(gpt2_spec())).eval()
    assert model.lm.config._attn_implementation == "sdpa"  # the fast kernel, which computes no weights
    ids = torch.randint(0, 11, (2, 7))
    plain = model(ids)
    logits, attentions = model(ids, output_attentions=True)
    assert model.lm.config._attn_implementation == "sdpa"  # switched back after the call
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    assert len(attentions) == 2
    for a in attentions:
        assert a.shape == (2, 4, 7, 7)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 7))
        assert (a.triu(1) == 0).all() and (a[..., torch.ones(7, 7, dtype=torch.bool).tril()] > 0).all()
    torch.testing.assert_close(attentions[0], _layer0_attention_by_hand(model, ids), atol=1e-5, rtol=1e-5)
    # padding: keys whose mask is 0 get no weight
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    _, masked = model(ids, attention_mask=mask, output_attentions=True)
    assert (masked[0][1, :, :, 5:] == 0).all()
    torch.testing.assert_close(masked[0][1].sum(-1), torch.ones(4, 7))


def test_eager_spec_returns_attentions_without_switching():
    model = seeded(lambda: models.build(gpt2_spec(attn_implementation="eager"))).eval()
    _, attentions = model(torch.randint(0, 11, (1, 5)), output_attentions=True)
    assert model.lm.config._attn_implementation == "eager" and attentions[0].shape == (1, 4, 5, 5)


def gpt2_parameters(V, P, d, L, inner=None):
    """GPT-2 with a tied LM head: token and position tables, L blocks, the final norm."""
    inner = inner or 4 * d
    block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * inner + inner) + (inner * d + d)
    return V * d + P * d + L * block + 2 * d


@pytest.mark.parametrize("fields", [dict(), dict(n_layer=3, n_embd=48, n_head=6), dict(intermediate_size=20)])
def test_gpt2_lm_parameter_count_is_gpt2s_formula(fields):
    spec = gpt2_spec(**fields)
    model = models.build(spec)
    expected = gpt2_parameters(11, SEQ, spec.n_embd, spec.n_layer, spec.intermediate_size)
    assert models.count_parameters(model) == (expected, expected)
    if not fields:
        assert expected == 11 * 32 + SEQ * 32 + 2 * (12 * 32 * 32 + 13 * 32) + 2 * 32
    untied = models.build(gpt2_spec(tie_embeddings=False, **fields))
    assert models.count_parameters(untied)[0] == expected + 11 * spec.n_embd


def test_tied_embeddings_are_one_tensor_and_stay_tied_while_training():
    model = seeded(lambda: models.build(gpt2_spec()))
    wte, head = model.lm.transformer.wte.weight, model.lm.lm_head.weight
    assert head is wte
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    ids = torch.randint(0, 11, (4, 8))
    before = wte.detach().clone()
    models.lm_loss(model(ids), ids).backward()
    optimizer.step()
    assert not torch.equal(wte, before) and model.lm.lm_head.weight is model.lm.transformer.wte.weight
    untied = models.build(gpt2_spec(tie_embeddings=False))
    assert untied.lm.lm_head.weight is not untied.lm.transformer.wte.weight
    assert not torch.equal(untied.lm.lm_head.weight, untied.lm.transformer.wte.weight)
    # the preset decides when the spec does not: deepseek's published head is untied
    deepseek = models.build(gpt2_spec(model="deepseek", n_kv_head=2))
    assert deepseek.lm.lm_head.weight is not deepseek.lm.model.embed_tokens.weight


def test_gpt2_lm_runs_in_bf16():
    model = seeded(lambda: models.build(gpt2_spec(n_embd=64, n_head=4))).eval()
    ids = torch.randint(0, 11, (3, SEQ))
    reference = model(ids)
    model.to(torch.bfloat16)
    assert model.lm.transformer.wte.weight.dtype == torch.bfloat16
    logits = model(ids)
    assert logits.dtype == torch.float32 and logits.shape == (3, SEQ, 11) and torch.isfinite(logits).all()
    assert (logits - reference).abs().max() < 0.1 * reference.abs().max()  # bf16 rounding, not another model
    _, attentions = model(ids, output_attentions=True)
    assert torch.isfinite(attentions[-1]).all()
    model.train()
    loss = models.lm_loss(model(ids), ids)
    loss.backward()
    assert torch.isfinite(loss) and model.lm.transformer.wte.weight.grad.dtype == torch.bfloat16


def test_an_lm_saves_and_loads_with_its_head_tied(tmp_path):
    model = seeded(lambda: models.build(gpt2_spec())).eval()
    with torch.no_grad():
        model.lm.transformer.wte.weight.add_(1.0)  # stand-in for training
    models.save_model(model, tmp_path / "lm")
    loaded = models.load_model(tmp_path / "lm")
    assert isinstance(loaded, models.CausalLM) and loaded.spec == model.spec
    assert loaded.lm.lm_head.weight is loaded.lm.transformer.wte.weight
    ids = torch.randint(0, 11, (2, 9))
    assert torch.equal(loaded(ids), model(ids))


def test_a_classifier_saved_before_specs_had_a_head_still_loads(tmp_path):
    import json

    model = seeded(lambda: models.build_classifier("bloom", 3, SEQ, n_layer=1, n_head=2, n_embd=16)).eval()
    models.save_model(model, tmp_path / "clf")
    path = tmp_path / "clf" / "classifier.json"
    info = json.loads(path.read_text())
    for new_field in ("head", "tie_embeddings"):
        del info["build_args"][new_field]  # the folder as build_classifier's keywords wrote it
    path.write_text(json.dumps(info))
    loaded = models.load_model(tmp_path / "clf")
    ids = torch.randint(0, 3, (2, 6))
    assert isinstance(loaded, models.SequenceClassifier) and torch.equal(loaded(ids), model(ids))
