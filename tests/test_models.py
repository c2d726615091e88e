"""Tests of the Hugging Face decoders (decoders.py, called through models.py): shapes, overrides, presets,
pooling, ensembles, errors, fine-tuning, LoRA, save/load.

Every model here is tiny and built from a configuration; the pretrained path is exercised on tiny
checkpoints that the tests write themselves with save_pretrained (nothing is downloaded).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
import tiny_checkpoints  # noqa: E402
from models import ModelConfigError, build_classifier, count_parameters, make_config  # noqa: E402

SEQ = 22
TINY = dict(n_layer=1, n_head=2, n_embd=32, n_kv_head=1, intermediate_size=64)


def tiny_overrides(name: str) -> dict:
    """TINY minus the settings a family has no field for (BLOOM: no GQA, MLP fixed at 4x; GPT-2: no GQA)."""
    kw = dict(TINY)
    if name in ("bloom", "gpt2"):
        kw.pop("n_kv_head")
    if name == "bloom":
        kw.pop("intermediate_size")
    return kw


def layers_of(backbone):
    return backbone.layers if hasattr(backbone, "layers") else backbone.h


# --------------------------------------------------------------------------------------------------
# From scratch
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [3, 11])
@pytest.mark.parametrize("name", list(models.PRESETS))
def test_forward_gives_one_finite_logit_per_example(name, vocab):
    torch.manual_seed(0)
    model = build_classifier(name, vocab, SEQ, **tiny_overrides(name))
    ids = torch.randint(0, vocab, (5, SEQ))
    mask = torch.ones(5, SEQ, dtype=torch.long)
    mask[0, 15:] = 0
    for out in (model(ids), model(ids, mask)):
        assert out.shape == (5,)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
    out.sum().backward()  # trainable end to end
    assert model.head.weight.grad is not None
    assert len(layers_of(model.backbone)) == 1
    assert model.backbone.config.vocab_size == vocab


def test_presets_and_names_are_consistent():
    assert set(models.PRESETS) == {"qwen1.7B", "qwen0.6B", "llama3", "deepseek", "bloom", "gpt2"}
    assert set(models.MODEL_NAMES) == set(models.PRESETS) | {"qwen3_finetune", "llama3_finetune", "deepseek_finetune"}
    for name in models.MODEL_NAMES:
        text = models.describe(name)
        assert text.startswith(name + ":")
    assert "28 layers, hidden 2048, intermediate 6144, 16 heads, 8 kv heads, head dim 128" in models.describe("qwen1.7B")
    assert "pretrained_path" in models.describe("qwen3_finetune")
    assert "trains only the head" in models.describe("llama3_finetune")


@pytest.mark.parametrize("name", ["qwen0.6B", "llama3", "deepseek"])
def test_overrides_reach_rotary_decoders(name):
    torch.manual_seed(0)
    model = build_classifier(name, 7, SEQ, n_layer=2, n_head=4, n_embd=48, n_kv_head=2, intermediate_size=80)
    backbone = model.backbone
    cfg = backbone.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 48, 4)
    assert (cfg.num_key_value_heads, cfg.intermediate_size, cfg.head_dim) == (2, 80, 12)
    assert len(backbone.layers) == 2
    assert backbone.embed_tokens.weight.shape == (7, 48)
    attn = backbone.layers[0].self_attn
    assert attn.q_proj.out_features == 4 * 12 and attn.k_proj.out_features == 2 * 12
    assert backbone.layers[0].mlp.up_proj.out_features == 80
    assert cfg.max_position_embeddings == SEQ
    assert model.head.in_features == 48


def test_overrides_reach_bloom_and_gpt2():
    torch.manual_seed(0)
    bloom = build_classifier("bloom", 5, SEQ, n_layer=3, n_head=4, n_embd=40)
    assert len(bloom.backbone.h) == 3
    assert bloom.backbone.word_embeddings.weight.shape == (5, 40)
    assert bloom.backbone.config.n_head == 4
    assert bloom.backbone.h[0].mlp.dense_h_to_4h.out_features == 160  # BLOOM's MLP is 4 * hidden
    gpt2 = build_classifier("gpt2", 5, SEQ, n_layer=2, n_head=4, n_embd=40, intermediate_size=56)
    assert len(gpt2.backbone.h) == 2
    assert gpt2.backbone.wte.weight.shape == (5, 40)
    assert gpt2.backbone.wpe.weight.shape == (SEQ, 40)
    assert gpt2.backbone.h[0].mlp.c_fc.nf == 56


def test_head_dim_rules():
    # Qwen3 keeps its own head size (128) when only n_head changes ...
    assert make_config("qwen0.6B", 3, SEQ, n_head=4).head_dim == 128
    # ... but n_embd // n_head when the width changes, and an explicit head_dim wins.
    assert make_config("qwen0.6B", 3, SEQ, n_embd=64, n_head=4).head_dim == 16
    assert make_config("qwen0.6B", 3, SEQ, n_embd=64, n_head=4, head_dim=8).head_dim == 8
    # Llama derives it from the width.
    assert make_config("llama3", 3, SEQ, n_head=8).head_dim == 2048 // 8
    # Without n_kv_head, a new n_head keeps the preset's query heads per kv head (llama3: 4, qwen: 2).
    assert make_config("llama3", 3, SEQ, n_head=8, n_embd=64).num_key_value_heads == 2
    assert make_config("qwen0.6B", 3, SEQ, n_head=4, n_embd=64).num_key_value_heads == 2
    assert make_config("deepseek", 3, SEQ, n_head=4, n_embd=64).num_key_value_heads == 4


# published shapes: layers, hidden, intermediate, heads, kv heads, head dim
FULL_SIZE = {
    "qwen1.7B": (28, 2048, 6144, 16, 8, 128),
    "qwen0.6B": (28, 1024, 3072, 16, 8, 128),
    "llama3": (16, 2048, 8192, 32, 8, 64),
    "deepseek": (24, 2048, 5504, 16, 16, 128),
}


@pytest.mark.parametrize("name", list(FULL_SIZE))
def test_full_size_rotary_configs_match_published_shapes(name):
    cfg = make_config(name, 3, 102)
    layers, hidden, inter, heads, kv, head_dim = FULL_SIZE[name]
    got = (
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    )
    assert got == (layers, hidden, inter, heads, kv, head_dim)
    assert cfg.vocab_size == 3 and cfg.max_position_embeddings == 102
    assert cfg.pad_token_id is None and cfg.bos_token_id == 0 and cfg.eos_token_id == 0


def test_full_size_family_details():
    qwen = make_config("qwen1.7B", 3, 102)
    assert qwen.model_type == "qwen3"
    assert qwen.rope_parameters["rope_theta"] == 1e6 and qwen.rope_parameters["rope_type"] == "default"
    assert qwen.rms_norm_eps == 1e-6 and qwen.tie_word_embeddings
    llama = make_config("llama3", 3, 102)
    assert llama.model_type == "llama"
    assert llama.rope_parameters == {
        "rope_type": "llama3",
        "rope_theta": 5e5,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    assert llama.rms_norm_eps == 1e-5 and llama.tie_word_embeddings
    deepseek = make_config("deepseek", 3, 102)
    assert deepseek.model_type == "llama"
    assert deepseek.rope_parameters["rope_type"] == "linear" and deepseek.rope_parameters["factor"] == 4.0
    assert deepseek.rope_parameters["rope_theta"] == 1e5
    assert deepseek.rms_norm_eps == 1e-6 and not deepseek.tie_word_embeddings
    bloom = make_config("bloom", 3, 102)
    assert (bloom.model_type, bloom.n_layer, bloom.hidden_size, bloom.n_head) == ("bloom", 24, 512, 8)
    gpt2 = make_config("gpt2", 3, 102)
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.n_head, gpt2.n_positions) == (12, 768, 12, 102)


def test_building_leaves_the_presets_untouched():
    snapshot = copy.deepcopy(models.PRESETS)
    torch.manual_seed(0)
    for name in models.PRESETS:
        make_config(name, 3, 102)
        build_classifier(name, 3, SEQ, n_head=4, n_embd=16, **({} if name in ("bloom", "gpt2") else {"n_kv_head": 2}))(
            torch.zeros(1, 4, dtype=torch.long)
        )
    assert models.PRESETS == snapshot


def decoder_parameters(vocab, hidden, inter, heads, kv, head_dim, layers):
    """Parameters of a Qwen3/Llama base model (no LM head), counted by hand."""
    attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2  # q, o; k, v (no biases)
    mlp = 3 * hidden * inter
    norms = 2 * hidden
    return vocab * hidden + layers * (attention + mlp + norms) + hidden


@pytest.mark.parametrize(
    "name, vocab, extra_per_layer, low, high",
    [
        ("qwen1.7B", 151_936, 2 * 128, 1.6e9, 1.8e9),  # + q_norm, k_norm per layer; Qwen3-1.7B
        ("llama3", 128_256, 0, 1.15e9, 1.30e9),  # Llama-3.2-1B: 1.24B
    ],
)
def test_full_size_parameter_count_on_meta_device(name, vocab, extra_per_layer, low, high):
    cfg = make_config(name, vocab, 4096)
    from transformers import AutoModel

    with torch.device("meta"):
        backbone = AutoModel.from_config(cfg)
    total = sum(p.numel() for p in backbone.parameters())
    layers, hidden, inter, heads, kv, head_dim = FULL_SIZE[name]
    expected = decoder_parameters(vocab, hidden, inter, heads, kv, head_dim, layers) + layers * extra_per_layer
    assert total == expected
    assert low < total < high


@pytest.mark.parametrize("name", ["qwen0.6B", "llama3"])
def test_every_token_embedding_is_alive(name):
    """A pad_token_id would make that token's embedding a zero, gradient-free row (padding_idx)."""
    torch.manual_seed(0)
    model = build_classifier(name, 3, SEQ, **TINY)
    emb = model.backbone.embed_tokens
    assert emb.padding_idx is None
    assert (emb.weight.abs().sum(1) > 0).all()
    ids = torch.tensor([[0, 1, 2, 0, 1, 2]])
    model(ids).sum().backward()
    assert (emb.weight.grad.abs().sum(1) > 0).all()


def test_dropout_reaches_config():
    torch.manual_seed(0)
    assert build_classifier("qwen0.6B", 3, SEQ, dropout=0.25, **TINY).backbone.config.attention_dropout == 0.25
    gpt2 = build_classifier("gpt2", 3, SEQ, dropout=0.0, **tiny_overrides("gpt2")).backbone.config
    assert gpt2.resid_pdrop == gpt2.embd_pdrop == gpt2.attn_pdrop == 0.0  # GPT-2's own default is 0.1
    bloom = build_classifier("bloom", 3, SEQ, dropout=0.1, **tiny_overrides("bloom")).backbone.config
    assert bloom.hidden_dropout == bloom.attention_dropout == 0.1


def test_attention_implementation_choice_and_equivalence():
    torch.manual_seed(0)
    sdpa = build_classifier("qwen0.6B", 11, SEQ, **TINY).eval()
    torch.manual_seed(0)
    eager = build_classifier("qwen0.6B", 11, SEQ, attn_implementation="eager", **TINY).eval()
    assert sdpa.backbone.config._attn_implementation == "sdpa"
    assert eager.backbone.config._attn_implementation == "eager"
    assert build_classifier("bloom", 3, SEQ, **tiny_overrides("bloom")).backbone.config._attn_implementation == "eager"
    ids = torch.randint(0, 11, (4, SEQ))
    mask = torch.ones(4, SEQ, dtype=torch.long)
    mask[1, 10:] = 0
    torch.testing.assert_close(sdpa(ids, mask), eager(ids, mask), atol=1e-5, rtol=1e-5)


def test_same_seed_same_model_and_init_uses_global_rng():
    torch.manual_seed(3)
    a = build_classifier("llama3", 3, SEQ, **TINY)
    torch.manual_seed(3)
    b = build_classifier("llama3", 3, SEQ, **TINY)
    c = build_classifier("llama3", 3, SEQ, **TINY)  # RNG moved on: different weights
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.head.weight, c.head.weight)


# --------------------------------------------------------------------------------------------------
# Pooling and ensembles
# --------------------------------------------------------------------------------------------------


def test_last_and_mean_pooling_differ_on_identical_weights():
    torch.manual_seed(0)
    last = build_classifier("qwen0.6B", 11, SEQ, pooling="last", **TINY).eval()
    torch.manual_seed(0)
    mean = build_classifier("qwen0.6B", 11, SEQ, pooling="mean", **TINY).eval()
    for pa, pb in zip(last.parameters(), mean.parameters()):
        assert torch.equal(pa, pb)
    ids = torch.randint(0, 11, (4, SEQ))
    assert not torch.allclose(last(ids), mean(ids))
    # and each is the head applied to what it claims to pool
    hidden = last.backbone(input_ids=ids).last_hidden_state
    torch.testing.assert_close(last(ids), last.head(hidden[:, -1]).squeeze(-1))
    torch.testing.assert_close(mean(ids), mean.head(hidden.mean(1)).squeeze(-1))


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("name", ["qwen0.6B", "llama3", "bloom", "gpt2"])
def test_right_padding_does_not_change_the_logit(name, pooling):
    torch.manual_seed(0)
    model = build_classifier(name, 11, SEQ, pooling=pooling, **tiny_overrides(name)).eval()
    n = 9
    ids = torch.randint(1, 11, (2, SEQ))
    alone = model(ids[:1, :n])
    padded_ids = ids.clone()
    padded_ids[0, n:] = 0
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[0, n:] = 0
    batch = model(padded_ids, mask)
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[1], model(ids[1:])[0], atol=1e-5, rtol=1e-5)
    # the mask is what makes this hold: without it the pooled positions include the padding
    assert not torch.allclose(model(padded_ids)[0], alone[0], atol=1e-4)


def test_ensemble_is_the_mean_of_independent_members():
    torch.manual_seed(0)
    ensemble = build_classifier("bloom", 3, SEQ, num_models=2, **tiny_overrides("bloom")).eval()
    assert len(ensemble.members) == 2
    first, second = ensemble.members
    assert not torch.equal(first.backbone.word_embeddings.weight, second.backbone.word_embeddings.weight)
    ids = torch.randint(0, 3, (6, SEQ))
    mask = torch.ones(6, SEQ, dtype=torch.long)
    mask[2, 12:] = 0
    a, b = first(ids, mask), second(ids, mask)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(ensemble(ids, mask), (a + b) / 2)
    total, trainable = count_parameters(ensemble)
    assert total == trainable == 2 * count_parameters(first)[0]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, suggestion",
    [("qwen1.7b", "qwen1.7B"), ("lama3", "llama3"), ("deepseek-coder", "deepseek"), ("qwen3-finetune", "qwen3_finetune")],
)
def test_unknown_model_suggests_the_closest_name(name, suggestion):
    with pytest.raises(ModelConfigError, match=f"Did you mean '{suggestion}'"):
        build_classifier(name, 3, SEQ)
    with pytest.raises(ModelConfigError, match="Known models"):
        models.describe(name)


@pytest.mark.parametrize(
    "name, kwargs, words",
    [
        ("llama3", dict(n_embd=30, n_head=4), ["n_embd=30", "n_head=4"]),
        ("qwen0.6B", dict(n_embd=30, n_head=4), ["n_embd=30", "head_dim"]),
        ("qwen0.6B", dict(n_head=6, n_kv_head=4), ["n_head=6", "n_kv_head=4"]),
        ("qwen0.6B", dict(n_embd=36, n_head=4), ["head_dim=9", "even"]),
        ("bloom", dict(n_head=4, n_embd=32, n_kv_head=2), ["n_kv_head=2", "bloom"]),
        ("bloom", dict(n_head=4, n_embd=32, intermediate_size=64), ["intermediate_size=64", "128"]),
        ("gpt2", dict(n_head=4, n_embd=32, head_dim=16), ["head_dim=16"]),
        ("gpt2", dict(n_layer=0), ["n_layer=0", "positive"]),
        ("llama3", dict(n_layer=1.5), ["n_layer=1.5"]),
        ("llama3", dict(pooling="max"), ["pooling='max'"]),
        ("llama3", dict(num_models=0), ["num_models=0"]),
        ("llama3", dict(dropout=1.5), ["dropout=1.5"]),
        ("llama3", dict(finetune_layers=2), ["finetune_layers=2", "from scratch"]),
        ("llama3", dict(lora_r=4), ["lora_r=4"]),
        ("llama3", dict(finetune_layers=-2), ["finetune_layers=-2"]),
        ("qwen3_finetune", dict(), ["pretrained_path"]),
    ],
)
def test_invalid_settings_raise_a_named_error(name, kwargs, words):
    with pytest.raises(ModelConfigError) as info:
        build_classifier(name, 3, SEQ, **kwargs)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_make_config_refuses_finetune_names_and_bad_task_sizes():
    with pytest.raises(ModelConfigError, match="checkpoint"):
        make_config("llama3_finetune", 3, SEQ)
    with pytest.raises(ModelConfigError, match="vocab_size=0"):
        make_config("llama3", 0, SEQ)
    with pytest.raises(ModelConfigError, match="max_positions=-1"):
        build_classifier("llama3", 3, -1)


# --------------------------------------------------------------------------------------------------
# Pretrained fine-tuning (tiny checkpoints written by the tests)
# --------------------------------------------------------------------------------------------------

from tiny_checkpoints import HEAD_DIM, HEADS, HIDDEN, KV, LAYERS, VOCAB  # noqa: E402


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """tiny_checkpoints.write: a tiny Qwen3 and a tiny Llama, plus a digit tokenizer without a pad token."""
    return tiny_checkpoints.write(tmp_path_factory.mktemp("checkpoints"))


FINETUNE_NAME = {"qwen3": "qwen3_finetune", "llama": "deepseek_finetune"}


def trainable_names(module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_loaded_backbone_equals_the_checkpoint(checkpoints, family):
    path, weights = checkpoints[family]
    model = build_classifier(FINETUNE_NAME[family], VOCAB, SEQ, pretrained_path=str(path))
    got = model.backbone.state_dict()
    assert set(got) == set(weights)
    for name, tensor in weights.items():
        assert torch.equal(got[name], tensor), name
    assert next(model.backbone.parameters()).dtype == torch.float32


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_finetune_layers_choose_what_trains(checkpoints, family):
    path, _ = checkpoints[family]
    build = lambda n: build_classifier(FINETUNE_NAME[family], VOCAB, SEQ, pretrained_path=str(path), finetune_layers=n)  # noqa: E731

    head_only = build(0)
    total, trainable = count_parameters(head_only)
    assert trainable == HIDDEN + 1
    assert trainable_names(head_only) == {"head.weight", "head.bias"}

    for n in (1, 2):
        model = build(n)
        top = [f"backbone.layers.{i}." for i in range(LAYERS - n, LAYERS)]
        expected = {
            name
            for name, _ in model.named_parameters()
            if name.startswith("head.") or name.startswith("backbone.norm.") or any(name.startswith(t) for t in top)
        }
        assert trainable_names(model) == expected
        by_hand = sum(p.numel() for name, p in model.named_parameters() if name in expected)
        assert count_parameters(model) == (total, by_hand)
        assert by_hand > HIDDEN + 1

    full = build(-1)
    assert count_parameters(full) == (total, total)

    with pytest.raises(ModelConfigError, match="finetune_layers=4"):
        build(LAYERS + 1)


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_lora_trains_adapters_and_head(checkpoints, family):
    path, _ = checkpoints[family]
    r = 4
    model = build_classifier(FINETUNE_NAME[family], VOCAB, SEQ, pretrained_path=str(path), lora_r=r, lora_alpha=8)
    q_out, kv_out = HEADS * HEAD_DIM, KV * HEAD_DIM
    per_layer = r * (HIDDEN + q_out) + 2 * r * (HIDDEN + kv_out) + r * (q_out + HIDDEN)  # q, k, v, o
    _, trainable = count_parameters(model)
    assert trainable == LAYERS * per_layer + HIDDEN + 1
    names = trainable_names(model)
    assert {"head.weight", "head.bias"} <= names
    assert all("lora_" in n for n in names - {"head.weight", "head.bias"})
    assert {n.split(".")[-4] for n in names if "lora_" in n} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def perturb_trainable(model):
    """Stand-in for training: move every trainable tensor (LoRA's B starts at zero)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("mode", [dict(finetune_layers=0), dict(finetune_layers=2), dict(finetune_layers=-1), dict(lora_r=2)])
@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_save_and_load_reproduce_logits(checkpoints, family, mode, tmp_path):
    path, weights = checkpoints[family]
    torch.manual_seed(0)
    model = build_classifier(FINETUNE_NAME[family], VOCAB, SEQ, pretrained_path=str(path), **mode)
    perturb_trainable(model)
    model.eval()
    ids = torch.randint(0, VOCAB, (4, SEQ))
    mask = torch.ones(4, SEQ, dtype=torch.long)
    mask[0, 7:] = 0
    before = model(ids, mask)

    models.save_model(model, tmp_path / "clf")
    rng = torch.get_rng_state()
    loaded = models.load_model(tmp_path / "clf")
    assert torch.equal(torch.get_rng_state(), rng)  # loading leaves the caller's RNG alone
    assert not loaded.training
    assert torch.equal(loaded(ids, mask), before)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name

    fresh = build_classifier(FINETUNE_NAME[family], VOCAB, SEQ, pretrained_path=str(path), **mode).eval()
    assert not torch.allclose(fresh(ids, mask), before)  # the reload did restore something
    if mode.get("finetune_layers") == 0 or mode.get("lora_r"):
        # frozen weights come back from the checkpoint untouched
        backbone = loaded.backbone.get_base_model() if mode.get("lora_r") else loaded.backbone
        state = {k.replace(".base_layer", ""): v for k, v in backbone.state_dict().items() if "lora_" not in k}
        for name, tensor in weights.items():
            assert torch.equal(state[name], tensor), name


def test_save_and_load_from_scratch_and_ensemble(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("bloom", 3, SEQ, num_models=2, pooling="mean", **tiny_overrides("bloom")).eval()
    ids = torch.randint(0, 3, (3, SEQ))
    models.save_model(model, tmp_path / "clf")
    loaded = models.load_model(tmp_path / "clf")
    assert isinstance(loaded, models.EnsembleClassifier)
    assert torch.equal(loaded(ids), model(ids))
    assert not list(tmp_path.glob("clf/*.tmp"))  # written atomically, nothing left behind


def test_lora_only_saves_adapters_and_head(checkpoints, tmp_path):
    from safetensors.torch import load_file

    path, _ = checkpoints["qwen3"]
    model = build_classifier("qwen3_finetune", VOCAB, SEQ, pretrained_path=str(path), lora_r=2)
    models.save_model(model, tmp_path / "clf")
    saved = load_file(str(tmp_path / "clf" / "classifier.safetensors"))
    assert set(saved) == trainable_names(model)
    assert all("lora_" in n or n.startswith("head.") for n in saved)


def test_pretrained_errors(checkpoints):
    qwen_path, _ = checkpoints["qwen3"]
    with pytest.raises(ModelConfigError, match="holds a qwen3 model.*expects llama"):
        build_classifier("llama3_finetune", VOCAB, SEQ, pretrained_path=str(qwen_path))
    with pytest.raises(ModelConfigError, match="n_layer"):
        build_classifier("qwen3_finetune", VOCAB, SEQ, pretrained_path=str(qwen_path), n_layer=1)
    with pytest.raises(ModelConfigError, match="vocab_size=99"):
        build_classifier("qwen3_finetune", 99, SEQ, pretrained_path=str(qwen_path))
    with pytest.raises(ModelConfigError, match="num_models=2"):
        build_classifier("qwen3_finetune", VOCAB, SEQ, pretrained_path=str(qwen_path), num_models=2)
    with pytest.raises(ModelConfigError, match="lora_r=2 with finetune_layers=1"):
        build_classifier("qwen3_finetune", VOCAB, SEQ, pretrained_path=str(qwen_path), lora_r=2, finetune_layers=1)
    with pytest.raises(ModelConfigError, match="config.json"):
        build_classifier("qwen3_finetune", VOCAB, SEQ, pretrained_path=str(qwen_path / "nowhere"))
    # a preset name with pretrained_path is the generic route (and checks the family too)
    model = build_classifier("qwen0.6B", VOCAB, SEQ, pretrained_path=str(qwen_path))
    assert count_parameters(model)[1] == HIDDEN + 1


def test_tokenizer_gets_a_pad_token_and_feeds_the_model(checkpoints):
    path, _ = checkpoints["qwen3"]
    tokenizer = models.load_tokenizer(str(path))
    assert tokenizer.pad_token == "[EOS]" and tokenizer.padding_side == "right"
    batch = tokenizer(["12", "34567"], padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist()[0] == [3, 4, 1, 1, 1]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0, 0], [1] * 5]
    model = build_classifier("qwen3_finetune", len(tokenizer), SEQ, pretrained_path=str(path)).eval()
    logits = model(batch["input_ids"], batch["attention_mask"])
    alone = model(tokenizer(["12"], return_tensors="pt")["input_ids"])
    torch.testing.assert_close(logits[0], alone[0], atol=1e-5, rtol=1e-5)


def test_bloom_uses_torch_fused_gelu_that_equals_bloom_gelu():
    """BLOOM's Python-level BloomGelu is swapped for torch's fused tanh GELU; the swap must not change
    the model: same function as transformers' own bloom_gelu_forward, forward and gradient."""
    from transformers.models.bloom import modeling_bloom

    bloom = build_classifier("bloom", 3, SEQ, n_layer=2, n_head=4, n_embd=40)
    gelus = [block.mlp.gelu_impl for block in bloom.backbone.h]
    assert all(isinstance(g, torch.nn.GELU) and g.approximate == "tanh" for g in gelus)
    x = torch.linspace(-6.0, 6.0, 2001, dtype=torch.float64, requires_grad=True)
    ours = gelus[0](x)
    theirs = modeling_bloom.BloomGelu().train()(x)  # training mode: its custom autograd function
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-7)
    weights = torch.randn(x.shape, dtype=torch.float64)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (g_theirs,) = torch.autograd.grad((theirs * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-6, atol=1e-7)


def _vanilla_bloom_twin(model):
    """transformers' own BloomModel holding the same weights as our classifier's backbone."""
    from transformers import BloomModel

    twin = BloomModel(copy.deepcopy(model.backbone.config))
    twin.load_state_dict(model.backbone.state_dict())
    return twin.train()


def _block_output_lengths(model, run):
    lengths = []
    handle = model.backbone.h[-1].register_forward_hook(lambda m, args, out: lengths.append(out[0].shape[1]))
    try:
        result = run()
    finally:
        handle.remove()
    return result, lengths


def test_bloom_final_block_computes_only_the_last_position_with_the_same_result():
    """With "last" pooling and no mask, BLOOM's final block computes position -1 alone; logits and every
    gradient equal those of transformers' unmodified BloomModel with the same weights."""
    torch.manual_seed(0)
    model = build_classifier("bloom", 3, SEQ, n_layer=3, n_head=4, n_embd=32)
    twin = _vanilla_bloom_twin(model)
    x = torch.randint(0, 3, (6, 15))
    y = torch.randint(0, 2, (6,)).float()

    logits, lengths = _block_output_lengths(model, lambda: model(x))
    assert lengths == [1]  # the shortcut ran: one position out of the final block
    expected = model.head(twin(input_ids=x).last_hidden_state[:, -1]).squeeze(-1)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)

    bce = torch.nn.functional.binary_cross_entropy_with_logits
    ours = torch.autograd.grad(bce(logits, y), list(model.backbone.parameters()) + list(model.head.parameters()))
    theirs = torch.autograd.grad(bce(expected, y), list(twin.parameters()) + list(model.head.parameters()))
    assert len(ours) == len(theirs) and all(g.abs().sum() > 0 for g in ours[-2:])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    # parameter names (state dicts, saved models) are those of transformers' model
    assert list(model.backbone.state_dict()) == list(twin.state_dict())


def test_bloom_final_block_computes_every_position_when_a_mask_or_mean_pooling_needs_them():
    torch.manual_seed(1)
    x = torch.randint(0, 3, (4, 9))
    mask = torch.ones_like(x)
    mask[0, 6:] = 0
    mask[2, 3:] = 0
    model = build_classifier("bloom", 3, SEQ, n_layer=2, n_head=2, n_embd=16).eval()
    twin = _vanilla_bloom_twin(model).eval()
    logits, lengths = _block_output_lengths(model, lambda: model(x, mask))
    assert lengths == [9]
    hidden = twin(input_ids=x, attention_mask=mask).last_hidden_state
    last = torch.tensor([5, 8, 2, 8])
    torch.testing.assert_close(logits, model.head(hidden[torch.arange(4), last]).squeeze(-1), rtol=1e-5, atol=1e-5)

    mean = build_classifier("bloom", 3, SEQ, n_layer=2, n_head=2, n_embd=16, pooling="mean").eval()
    twin = _vanilla_bloom_twin(mean).eval()
    logits, lengths = _block_output_lengths(mean, lambda: mean(x))
    assert lengths == [9]
    expected = mean.head(twin(input_ids=x).last_hidden_state.mean(1)).squeeze(-1)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # the same classifier, asked again without a mask, takes the shortcut again
    _, lengths = _block_output_lengths(model, lambda: model(x))
    assert lengths == [1]


def test_a_whole_bloom_classifier_pickles_and_comes_back_equal(tmp_path):
    """torch.save(model) pickles classes by name: the last-position block class must be findable,
    also in a fresh process that never built a BLOOM."""
    torch.manual_seed(0)
    model = build_classifier("bloom", 3, SEQ, n_layer=2, n_head=2, n_embd=16).eval()
    torch.save(model, tmp_path / "whole.pt")
    x = torch.randint(0, 3, (3, 7))
    torch.save(x, tmp_path / "x.pt")
    torch.save(model(x).detach(), tmp_path / "expected.pt")
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import models; "
        "m = torch.load(sys.argv[2] + '/whole.pt', weights_only=False); x = torch.load(sys.argv[2] + '/x.pt'); "
        "torch.testing.assert_close(m(x), torch.load(sys.argv[2] + '/expected.pt')); "
        "print(type(m.backbone.h[-1]).__name__, m._last_position_blocks[0] is m.backbone.h[-1])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(Path(models.__file__).parent), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["LastPositionBloomBlock", "True"]
