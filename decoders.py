"""Hugging Face decoders, one of the model kinds that models.py (the registry tasks call) builds from a
spec: ``DecoderSpec`` -> ``check(spec)`` (what is wrong, building no weights) and ``build(spec)``.

Two heads on a decoder:

* ``head="classifier"`` (``SequenceClassifier``): a backbone (``transformers.AutoModel``: embeddings,
  decoder layers, final norm, no language-model head) plus a new ``Linear(hidden, 1)`` head on a
  pooled hidden state, ONE logit per example.

  * ``pooling="last"``: the hidden state of the last position; with an ``attention_mask``, of the last
    position whose mask is 1 (so padding on the right changes nothing);
  * ``pooling="mean"``: the mean of the hidden states over the positions whose mask is 1.

* ``head="lm"`` (``CausalLM``): the family's ``*ForCausalLM`` model, next-token logits at every
  position (tied to the input embedding or not: ``tie_embeddings``), attention maps on request;
  ``lm_loss`` scores it with Hugging Face's label convention. From scratch only.

Two ways to get a backbone:

* **From scratch** (``qwen1.7B``, ``qwen0.6B``, ``llama3``, ``deepseek``, ``bloom``, ``gpt2``): the
  published shapes are written below in ``PRESETS`` (nothing is downloaded); vocabulary size and
  positions come from the task; ``n_layer``, ``n_head``, ``n_embd``, ``n_kv_head``,
  ``intermediate_size`` and ``head_dim`` shrink them. ``num_models > 1`` builds an ensemble of
  independently initialised backbones: ``ensemble="mean_logits"`` (``LogitMeanEnsemble``, this
  project's default) averages the logits of K complete classifiers, each with its own head;
  ``ensemble="mean_hidden"`` (``HiddenMeanEnsemble``, what the original's bloom ensemble computed)
  averages the K backbones' pooled hidden states and reads them with ONE shared head.
* **Pretrained** (``qwen3_finetune``, ``llama3_finetune``, ``deepseek_finetune``, or any preset name
  with ``pretrained_path``): weights from a local checkpoint (``local_files_only``), loaded in float32.
  What trains is set by ``finetune_layers`` / ``lora_r`` (see ``build_classifier``).

``param_dtype="bfloat16"`` stores the classifier's backbone parameters in bf16 (from scratch: built
in bf16; pretrained: loaded in bf16), the head staying float32. That is not autocast: the weights
themselves, the optimiser's update and its state are bf16, so an update smaller than a weight's bf16
spacing rounds away (what the original's from-scratch Qwen3/DeepSeek and its fine-tuned models did).

``save_model`` / ``load_model`` round-trip a classifier or LM exactly (for pretrained backbones only the
trainable tensors are written; the frozen rest comes back from ``pretrained_path``).

Choices worth knowing:

* Attention runs through ``sdpa`` where the family has it (Qwen3, Llama, GPT-2) and ``eager`` for
  BLOOM, which has no other implementation. Measured on 2 CPU threads (forward+backward, median of
  15): at the paper's length (L=100, 102 positions) sdpa took 0.78-1.02x the time of eager for
  widths 64-256; eager only won on the tiniest case (22 positions, width 32: 4 ms against 5 ms).
* ``pad_token_id`` stays unset for models built from scratch. Qwen3 and Llama use it as the
  embedding's ``padding_idx``, which zeroes that token's embedding and stops its gradient: in a
  3-symbol vocabulary that kills a real token. Padding is handled by ``attention_mask`` instead.
  bos/eos are set to 0, a valid id in any vocabulary.
* ``use_cache`` is off: a key/value cache only costs time when nothing is generated.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import functools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PRESETS",
    "FINETUNE_MODELS",
    "MODEL_NAMES",
    "SIZE_SETTINGS",
    "HEADS",
    "ModelConfigError",
    "DecoderSpec",
    "check",
    "build",
    "SequenceClassifier",
    "EnsembleClassifier",
    "LogitMeanEnsemble",
    "HiddenMeanEnsemble",
    "ENSEMBLES",
    "PARAM_DTYPES",
    "CausalLM",
    "lm_loss",
    "make_config",
    "build_classifier",
    "describe",
    "save_model",
    "load_model",
    "load_tokenizer",
]


class ModelConfigError(ValueError):
    """A model setting is unknown, impossible or inconsistent; the message names the setting."""


# --------------------------------------------------------------------------------------------------
# Published shapes (public facts). Keys are the family's own config argument names (transformers 5.x:
# RoPE settings live in `rope_parameters`, which also holds `rope_theta`). Vocabulary, positions,
# token ids and dropout are set per run.
# --------------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # Qwen/Qwen3-1.7B
    "qwen1.7B": {
        "model_type": "qwen3",
        "num_hidden_layers": 28,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "attention_bias": False,
        "use_sliding_window": False,
        "max_window_layers": 28,
        "tie_word_embeddings": True,
    },
    # Qwen/Qwen3-0.6B (head_dim 128 although hidden / heads = 64: Qwen3 sets it independently)
    "qwen0.6B": {
        "model_type": "qwen3",
        "num_hidden_layers": 28,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "attention_bias": False,
        "use_sliding_window": False,
        "max_window_layers": 28,
        "tie_word_embeddings": True,
    },
    # meta-llama/Llama-3.2-1B (head_dim 64 = 2048 / 32)
    "llama3": {
        "model_type": "llama",
        "num_hidden_layers": 16,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
    },
    # deepseek-ai/deepseek-coder-1.3b-base: a Llama decoder, full multi-head attention (head_dim 128)
    "deepseek": {
        "model_type": "llama",
        "num_hidden_layers": 24,
        "hidden_size": 2048,
        "intermediate_size": 5504,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "linear", "rope_theta": 100_000.0, "factor": 4.0},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
    },
    # BLOOM as in the seed README's large-data sweep: ALiBi positions, MLP width fixed at 4 * hidden
    "bloom": {
        "model_type": "bloom",
        "n_layer": 24,
        "hidden_size": 512,
        "n_head": 8,
        "layer_norm_epsilon": 1e-5,
        "apply_residual_connection_post_layernorm": False,
        "tie_word_embeddings": True,
    },
    # openai-community/gpt2 (124M shape): learned absolute positions, a small generic baseline
    "gpt2": {
        "model_type": "gpt2",
        "n_layer": 12,
        "n_embd": 768,
        "n_head": 12,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
    },
}

_PRESET_SOURCES = {
    "qwen1.7B": "Qwen3-1.7B",
    "qwen0.6B": "Qwen3-0.6B",
    "llama3": "Llama-3.2-1B",
    "deepseek": "deepseek-coder-1.3b-base",
    "bloom": "BLOOM (seed README large-data sweep)",
    "gpt2": "GPT-2 small",
}

# fine-tuning name -> the model_type its checkpoint must have
FINETUNE_MODELS: dict[str, str] = {
    "qwen3_finetune": "qwen3",
    "llama3_finetune": "llama",
    "deepseek_finetune": "llama",
}

MODEL_NAMES: tuple[str, ...] = tuple(PRESETS) + tuple(FINETUNE_MODELS)
DROPOUT_NOISES = ("torch", "counter")

SIZE_SETTINGS = ("n_layer", "n_head", "n_embd", "n_kv_head", "intermediate_size", "head_dim")

HEADS = ("classifier", "lm")

ENSEMBLES = ("mean_logits", "mean_hidden")  # see LogitMeanEnsemble, HiddenMeanEnsemble

PARAM_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # the backbone's parameters


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderSpec:
    """A Hugging Face decoder as a task asks for it: ``models.build(spec)`` builds it,
    ``models.check(spec)`` lists what is wrong with it without building any weights.

    model: one of ``MODEL_NAMES``. vocab_size / max_positions: the task's (BLOOM's ALiBi has no
    position table and ignores max_positions). n_layer ... head_dim: shrink a from-scratch preset
    (None = the preset's; the rules are make_config's). dropout: the family's dropout fields
    (attention dropout for Qwen3/Llama; hidden and attention for BLOOM; residual, embedding and
    attention for GPT-2).

    head: "classifier", one logit per sequence from a pooled hidden state (``SequenceClassifier``),
    or "lm", next-token logits at every position (``CausalLM``; train it with ``lm_loss``).
    pooling: the classifier's, "last" (last unmasked position) or "mean" (over unmasked positions).
    num_models: the classifier's, from scratch: > 1 builds that many independently initialised backbones.
    ensemble: how num_models > 1 combines them: "mean_logits" (K classifiers, each with its own head,
    logits averaged: LogitMeanEnsemble) or "mean_hidden" (the original's: the K pooled hidden states
    averaged, one shared head: HiddenMeanEnsemble). With num_models = 1 both are one SequenceClassifier.
    param_dtype: the classifier's backbone parameters, "float32" or "bfloat16" (the weights themselves,
    not autocast; the head stays float32).
    pretrained_path, finetune_layers, lora_r, lora_alpha, lora_dropout: a classifier on a local
    checkpoint and what of it trains (see build_classifier). attn_implementation: None = the family's
    measured default (sdpa; eager for BLOOM, which has no other). tie_embeddings: the LM head's,
    tied to the input embedding or not (None = the preset's: tied for all but deepseek).
    layer_repeats: the LM's, from scratch: run the stack of decoder layers this many times in order
    (layers 0..n-1, then 0..n-1 again ...), sharing their parameters (the GrokkedTransformer's
    add_recurrence is 2); 1 = every layer once.
    dropout_noise: the GPT-2 LM's dropout masks in training on CPU: "torch" (nn.Dropout's, drawn from
    torch's global generator) or "counter" (a function of the run's seed, the training call and the
    element's place, drawn in parallel: see ``counter_keep_mask``). On a GPU both run the model's own.
    """

    model: str
    vocab_size: int
    max_positions: int
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    n_kv_head: int | None = None
    intermediate_size: int | None = None
    head_dim: int | None = None
    dropout: float = 0.0
    head: str = "classifier"
    pooling: str = "last"
    num_models: int = 1
    ensemble: str = "mean_logits"
    param_dtype: str = "float32"
    pretrained_path: str | None = None
    finetune_layers: int = 0
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    attn_implementation: str | None = None
    tie_embeddings: bool | None = None
    layer_repeats: int = 1
    dropout_noise: str = "torch"


@dataclasses.dataclass(frozen=True)
class _Family:
    """How one transformers architecture names things."""

    fields: dict[str, str]  # uniform size setting -> config argument (absent: not settable)
    positions_field: str | None  # None: no position table (ALiBi)
    layers_attr: str  # the backbone's ModuleList of decoder layers
    final_norm_attr: str
    lora_targets: tuple[str, ...]  # attention projections, matched as module-name suffixes
    dropout_fields: tuple[str, ...]
    attn_implementation: str
    free_head_dim: bool  # head_dim may differ from hidden / heads without hidden % heads == 0
    rotary: bool
    lora_fan_in_fan_out: bool = False  # GPT-2 stores Conv1D weights transposed


_LLAMA_FIELDS = {
    "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "n_embd": "hidden_size",
    "n_kv_head": "num_key_value_heads",
    "intermediate_size": "intermediate_size",
    "head_dim": "head_dim",
}

_FAMILIES: dict[str, _Family] = {
    "qwen3": _Family(
        fields=_LLAMA_FIELDS,
        positions_field="max_position_embeddings",
        layers_attr="layers",
        final_norm_attr="norm",
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
        dropout_fields=("attention_dropout",),
        attn_implementation="sdpa",
        free_head_dim=True,
        rotary=True,
    ),
    "llama": _Family(
        fields=_LLAMA_FIELDS,
        positions_field="max_position_embeddings",
        layers_attr="layers",
        final_norm_attr="norm",
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
        dropout_fields=("attention_dropout",),
        attn_implementation="sdpa",
        free_head_dim=False,  # LlamaConfig insists on hidden_size % num_attention_heads == 0
        rotary=True,
    ),
    "bloom": _Family(
        fields={"n_layer": "n_layer", "n_head": "n_head", "n_embd": "hidden_size"},
        positions_field=None,
        layers_attr="h",
        final_norm_attr="ln_f",
        lora_targets=("query_key_value", "self_attention.dense"),
        dropout_fields=("hidden_dropout", "attention_dropout"),
        attn_implementation="eager",  # BloomModel has no sdpa implementation
        free_head_dim=False,
        rotary=False,
    ),
    "gpt2": _Family(
        fields={"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "intermediate_size": "n_inner"},
        positions_field="n_positions",
        layers_attr="h",
        final_norm_attr="ln_f",
        lora_targets=("attn.c_attn", "attn.c_proj"),
        dropout_fields=("resid_pdrop", "embd_pdrop", "attn_pdrop"),
        attn_implementation="sdpa",
        free_head_dim=False,
        rotary=False,
        lora_fan_in_fan_out=True,
    ),
}


# --------------------------------------------------------------------------------------------------
# Names and shapes
# --------------------------------------------------------------------------------------------------


def _unknown_name(model: object) -> ModelConfigError:
    text = str(model)
    by_case = {name.lower(): name for name in MODEL_NAMES}
    close = difflib.get_close_matches(text.lower(), list(by_case), n=1, cutoff=0.4)
    hint = f" Did you mean {by_case[close[0]]!r}?" if close else ""
    return ModelConfigError(f"model = {text!r} is unknown.{hint} Known models: {', '.join(MODEL_NAMES)}.")


def _check_name(model: str) -> None:
    if model not in MODEL_NAMES:
        raise _unknown_name(model)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(f"{name}={value!r} must be a positive integer.")
    return value


def _preset_value(preset: dict, family: _Family, setting: str) -> Any:
    """A uniform size setting's value in a preset, derived where the family derives it."""
    if setting == "n_kv_head" and "n_kv_head" not in family.fields:
        return preset[family.fields["n_head"]]
    if setting == "intermediate_size" and preset.get(family.fields.get("intermediate_size", ""), None) is None:
        return 4 * preset[family.fields["n_embd"]]
    if setting == "head_dim" and preset.get("head_dim") is None:
        return preset[family.fields["n_embd"]] // preset[family.fields["n_head"]]
    return preset[family.fields[setting]]


def _kv_heads_like_preset(n_head: int, preset: dict, family: _Family) -> int:
    """Key/value heads for a new n_head that keep the preset's query heads per kv head where possible:
    the largest divisor of n_head that gives each kv head at least as many query heads as the preset."""
    group = preset[family.fields["n_head"]] // preset[family.fields["n_kv_head"]]
    return max((d for d in range(1, n_head + 1) if n_head % d == 0 and d * group <= n_head), default=1)


def _resolve_shape(model: str, overrides: dict[str, int | None]) -> dict[str, Any]:
    """Preset + uniform overrides -> the family's config arguments, validated."""
    preset = copy.deepcopy(PRESETS[model])
    family = _FAMILIES[preset["model_type"]]
    given = {k: _positive_int(k, v) for k, v in overrides.items() if v is not None}

    n_head = given.get("n_head", _preset_value(preset, family, "n_head"))
    n_embd = given.get("n_embd", _preset_value(preset, family, "n_embd"))
    if "n_kv_head" in given:
        n_kv_head = given["n_kv_head"]
    elif "n_kv_head" not in family.fields:
        n_kv_head = n_head  # every head has its own keys and values
    elif "n_head" in given:
        n_kv_head = _kv_heads_like_preset(n_head, preset, family)
    else:
        n_kv_head = _preset_value(preset, family, "n_kv_head")
    if "head_dim" in given:
        head_dim = given["head_dim"]
    elif "n_embd" in given or not family.free_head_dim or preset.get("head_dim") is None:
        # Widening or narrowing the model keeps heads tiling the hidden state.
        if n_embd % n_head:
            raise ModelConfigError(
                f"n_embd={n_embd} is not divisible by n_head={n_head} ({model} needs n_embd // n_head "
                f"as the head size{'; or set head_dim explicitly' if family.free_head_dim else ''})."
            )
        head_dim = n_embd // n_head
    else:
        head_dim = preset["head_dim"]  # Qwen3 keeps its own head size when only n_head changes

    if not family.free_head_dim and n_embd % n_head:
        raise ModelConfigError(f"n_embd={n_embd} is not divisible by n_head={n_head}, which {model} requires.")
    if n_head % n_kv_head:
        raise ModelConfigError(
            f"n_head={n_head} is not divisible by n_kv_head={n_kv_head}: each key/value head must serve "
            f"the same number of query heads."
        )
    if family.rotary and head_dim % 2:  # RoPE rotates pairs of dimensions (an odd 3 crashed in training)
        where = "" if "head_dim" in given or head_dim != n_embd // n_head else \
            f" (n_embd // n_head = {n_embd} // {n_head}: set head_dim, or an n_head that leaves an even head size)"
        raise ModelConfigError(f"head_dim={head_dim}{where} must be even for rotary position embeddings ({model}).")

    # Settings the family has no field for must agree with what the family derives.
    derived = {"n_kv_head": n_head, "intermediate_size": 4 * n_embd, "head_dim": n_embd // n_head}
    for setting, value in given.items():
        if setting not in family.fields and value != derived[setting]:
            raise ModelConfigError(
                f"{setting}={value} cannot be set for {model} ({preset['model_type']} fixes it at "
                f"{derived[setting]} for n_embd={n_embd}, n_head={n_head}); leave {setting} unset."
            )

    args = dict(preset)
    resolved = {"n_head": n_head, "n_embd": n_embd, "n_kv_head": n_kv_head, "head_dim": head_dim}
    for setting, field in family.fields.items():
        if setting in resolved:
            args[field] = resolved[setting]
        elif setting in given:
            args[field] = given[setting]
    return args


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_rope_length_warning():
    """Llama-3's published RoPE scaling names 8192 pretraining positions; our tasks use ~100, and
    transformers warns that this is 'more than max_position_embeddings'. It is expected here."""
    rope_logger = logging.getLogger("transformers.modeling_rope_utils")
    flt = _DropMessage("original_max_position_embeddings field must be less than")
    rope_logger.addFilter(flt)
    try:
        yield
    finally:
        rope_logger.removeFilter(flt)


def make_config(
    model: str,
    vocab_size: int,
    max_positions: int,
    *,
    n_layer: int | None = None,
    n_head: int | None = None,
    n_embd: int | None = None,
    n_kv_head: int | None = None,
    intermediate_size: int | None = None,
    head_dim: int | None = None,
    dropout: float = 0.0,
    tie_embeddings: bool | None = None,
):
    """The transformers config of a from-scratch preset, shrunk by the size settings (None = keep).

    Builds no weights, so full-size shapes are cheap to inspect. Rules for settings left at None:
    head_dim becomes n_embd // n_head when n_embd is set (Qwen3 otherwise keeps its own 128; the
    other families always derive it); n_kv_head, when only n_head is set, keeps the preset's query
    heads per key/value head as closely as n_head allows (largest divisor of n_head that does).
    BLOOM and GPT-2 have no n_kv_head / head_dim fields (and BLOOM no intermediate_size): setting
    them to anything but the derived value is refused. tie_embeddings (None = the preset's) ties a
    language-model head to the input embedding.
    """
    from transformers import AutoConfig

    if model in FINETUNE_MODELS:
        raise ModelConfigError(
            f"model={model!r} takes its shape from a checkpoint (pretrained_path); it has no preset config."
        )
    _check_name(model)
    _positive_int("vocab_size", vocab_size)
    _positive_int("max_positions", max_positions)
    _check_dropout("dropout", dropout)
    overrides = dict(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_kv_head=n_kv_head,
        intermediate_size=intermediate_size,
        head_dim=head_dim,
    )
    args = _resolve_shape(model, overrides)
    family = _FAMILIES[args["model_type"]]
    model_type = args.pop("model_type")
    args["vocab_size"] = vocab_size
    if family.positions_field is not None:
        args[family.positions_field] = max_positions
    args.update(pad_token_id=None, bos_token_id=0, eos_token_id=0, use_cache=False)
    for field in family.dropout_fields:
        args[field] = float(dropout)
    if tie_embeddings is not None:
        args["tie_word_embeddings"] = bool(tie_embeddings)
    try:
        with _quiet_rope_length_warning():
            return AutoConfig.for_model(model_type, **args)
    except (ValueError, TypeError) as err:  # transformers' own validation, phrased for the user
        raise ModelConfigError(f"{model}: invalid shape {overrides}: {err}") from err


# --------------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------------


class SequenceClassifier(nn.Module):
    """A backbone and a ``Linear(hidden, 1)`` head on a pooled hidden state; forward gives logits [batch]."""

    def __init__(self, backbone: nn.Module, pooling: str = "last"):
        super().__init__()
        _check_pooling(pooling)
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(backbone.config.hidden_size, 1)
        # Final blocks that can compute the last position alone (a tuple: not registered as submodules)
        self._last_position_blocks = tuple(m for m in backbone.modules() if hasattr(m, "last_position_only"))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # Without a mask, "last" pooling reads position -1 only: the final block may skip the others.
        only_last = self.pooling == "last" and attention_mask is None
        for block in self._last_position_blocks:
            block.last_position_only = only_last
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        pooled = _pool(hidden, attention_mask, self.pooling)
        return self.head(pooled.to(self.head.weight.dtype)).squeeze(-1)


class LogitMeanEnsemble(nn.Module):
    """Independently initialised classifiers, each with its own head, whose logits are averaged
    (``ensemble="mean_logits"``). This project's ensemble, NOT the original's: that one averaged the
    backbones' hidden states into one shared head (``HiddenMeanEnsemble``). The two differ in what
    trains: here K heads, each fitted to its own backbone; there one head fitted to the average."""

    def __init__(self, members: list[SequenceClassifier]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([m(input_ids, attention_mask) for m in self.members]).mean(0)


EnsembleClassifier = LogitMeanEnsemble  # its former name (models saved whole with torch.save still load)


class HiddenMeanEnsemble(nn.Module):
    """The original's bloom ensemble (``ensemble="mean_hidden"``): K independently initialised
    backbones read the same input; their pooled hidden states (last position) are averaged and ONE
    shared ``Linear(hidden, 1)`` head turns the average into the logit. Built backbones first, then
    the head, in the original's order."""

    def __init__(self, backbones: list[nn.Module], pooling: str = "last"):
        super().__init__()
        _check_pooling(pooling)
        self.backbones = nn.ModuleList(backbones)
        self.pooling = pooling
        self.head = nn.Linear(backbones[0].config.hidden_size, 1)
        self._last_position_blocks = tuple(
            m for backbone in backbones for m in backbone.modules() if hasattr(m, "last_position_only")
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        only_last = self.pooling == "last" and attention_mask is None
        for block in self._last_position_blocks:
            block.last_position_only = only_last
        pooled = torch.stack([
            _pool(b(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state,
                  attention_mask, self.pooling)
            for b in self.backbones
        ]).mean(0)
        return self.head(pooled.to(self.head.weight.dtype)).squeeze(-1)


def _pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    if attention_mask is None:
        return hidden[:, -1] if pooling == "last" else hidden.mean(1)
    keep = attention_mask.to(torch.bool)
    if pooling == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        last = (positions * keep).argmax(1)  # the largest kept position (works for either padding side)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    # masked_fill, not multiplication: a padded row may hold NaN from a fully masked attention row
    total = hidden.masked_fill(~keep.unsqueeze(-1), 0.0).sum(1)
    return total / keep.sum(1, keepdim=True).clamp(min=1).to(hidden.dtype)


def _check_pooling(pooling: str) -> None:
    if pooling not in ("last", "mean"):
        raise ModelConfigError(f"pooling={pooling!r} must be 'last' or 'mean'.")


def _check_dropout(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ModelConfigError(f"{name}={value!r} must be a number in [0, 1).")


def build_classifier(
    model: str,
    vocab_size: int,
    max_positions: int,
    *,
    n_layer: int | None = None,
    n_head: int | None = None,
    n_embd: int | None = None,
    n_kv_head: int | None = None,
    intermediate_size: int | None = None,
    head_dim: int | None = None,
    pooling: str = "last",
    num_models: int = 1,
    ensemble: str = "mean_logits",
    param_dtype: str = "float32",
    dropout: float = 0.0,
    pretrained_path: str | None = None,
    finetune_layers: int = 0,
    lora_r: int = 0,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    attn_implementation: str | None = None,
) -> nn.Module:
    """A one-logit sequence classifier: ``module(input_ids, attention_mask=None) -> logits [batch]``.

    The keyword form of ``models.build(DecoderSpec(..., head="classifier"))``; see ``DecoderSpec``
    for what each argument means. Pretrained weights (``*_finetune`` names, which require it, or any
    preset with it set): ``pretrained_path`` is a local ``save_pretrained`` folder whose model_type
    must match the name's family; weights load in float32 (param_dtype="bfloat16": bf16). What trains:

    * ``finetune_layers = 0`` (default): ONLY the new head; the whole backbone is frozen.
      (The original README said 0 meant full fine-tuning, but its code trained only the head; this
      project keeps what the code did.)
    * ``finetune_layers = N > 0``: the head, the top N decoder layers and the final norm. (The
      original's code asked for this too but trained only the head: reentrant gradient checkpointing
      behind frozen embeddings let no gradient reach the layers. To reproduce that, ask for
      finetune_layers = 0; target_functions' ``head_only`` setting does so whatever N is.)
    * ``finetune_layers = -1``: everything (full fine-tuning).
    * ``lora_r > 0`` (with finetune_layers = 0): LoRA adapters (rank lora_r, lora_alpha,
      lora_dropout) on the attention projections through peft, plus the head; the rest is frozen.

    A from-scratch model always trains every parameter (finetune_layers 0 or -1; N > 0 and LoRA are
    refused there). Uses the global torch RNG for initialisation only; seed before calling.
    """
    spec = DecoderSpec(
        model=model,
        vocab_size=vocab_size,
        max_positions=max_positions,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_kv_head=n_kv_head,
        intermediate_size=intermediate_size,
        head_dim=head_dim,
        dropout=dropout,
        head="classifier",
        pooling=pooling,
        num_models=num_models,
        ensemble=ensemble,
        param_dtype=param_dtype,
        pretrained_path=pretrained_path,
        finetune_layers=finetune_layers,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        attn_implementation=attn_implementation,
    )
    return build(checked(spec))


def checked(spec: DecoderSpec) -> DecoderSpec:
    """spec itself, or ModelConfigError with every problem ``check`` finds (one per line)."""
    problems = check(spec)
    if problems:
        raise ModelConfigError("\n".join(problems))
    return spec


def check(spec: DecoderSpec) -> list[str]:
    """What is wrong with spec, one sentence per problem naming the field; empty if it builds.

    Builds no weights: a from-scratch shape is checked on its transformers config, a checkpoint on its
    config.json. The shape and the checkpoint are only looked at once everything else is valid.
    """
    if spec.model not in MODEL_NAMES:
        return [str(_unknown_name(spec.model))]
    problems: list[str] = []

    def refuse(validate, *args, **kwargs):
        try:
            validate(*args, **kwargs)
        except ModelConfigError as err:
            problems.append(str(err))

    if spec.head not in HEADS:
        problems.append(f"head={spec.head!r} must be 'classifier' (one logit per sequence) or 'lm' (next-token logits).")
    refuse(_check_pooling, spec.pooling)
    refuse(_positive_int, "vocab_size", spec.vocab_size)
    refuse(_positive_int, "max_positions", spec.max_positions)
    refuse(_positive_int, "num_models", spec.num_models)
    if spec.ensemble not in ENSEMBLES:
        problems.append(f"ensemble={spec.ensemble!r} must be 'mean_logits' (K heads, logits averaged) or "
                        f"'mean_hidden' (the original's: hidden states averaged, one shared head).")
    if spec.param_dtype not in PARAM_DTYPES:
        problems.append(f"param_dtype={spec.param_dtype!r} must be one of {', '.join(map(repr, PARAM_DTYPES))}.")
    refuse(_check_dropout, "dropout", spec.dropout)
    refuse(_check_dropout, "lora_dropout", spec.lora_dropout)
    n, lora_r, lora_alpha = spec.finetune_layers, spec.lora_r, spec.lora_alpha
    if isinstance(n, bool) or not isinstance(n, int) or n < -1:
        problems.append(
            f"finetune_layers={n!r} must be -1 (train everything), 0 (head only) or N > 0 "
            f"(head, top N layers and final norm)."
        )
        n = 0
    if isinstance(lora_r, bool) or not isinstance(lora_r, int) or lora_r < 0:
        problems.append(f"lora_r={lora_r!r} must be 0 (no LoRA) or a positive rank.")
        lora_r = 0
    if lora_r and (isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)) or lora_alpha <= 0):
        problems.append(f"lora_alpha={lora_alpha!r} must be a positive number.")
    if spec.tie_embeddings not in (None, True, False):
        problems.append(f"tie_embeddings={spec.tie_embeddings!r} must be True, False or None (the preset's).")
    if spec.attn_implementation is not None and not isinstance(spec.attn_implementation, str):
        problems.append(f"attn_implementation={spec.attn_implementation!r} must be a name such as 'eager' or 'sdpa'.")
    if spec.head == "lm":
        if spec.pretrained_path is not None or spec.model in FINETUNE_MODELS:
            problems.append(
                "head='lm' is built from scratch from a preset: pretrained_path and the *_finetune models "
                "(fine-tuning a checkpoint) go with head='classifier' only."
            )
        if spec.num_models != 1:
            problems.append(f"num_models={spec.num_models!r}: ensembles are one-logit classifiers (head='classifier').")
        if spec.param_dtype != "float32":
            problems.append(f"param_dtype={spec.param_dtype!r} applies to head='classifier' (its backbone); "
                            f"an LM is built in float32 (use mixed precision for bf16 arithmetic).")
        if spec.pooling != "last":
            problems.append(f"pooling={spec.pooling!r} applies to head='classifier': a causal LM predicts at every position.")
    elif spec.tie_embeddings is not None:
        problems.append(
            f"tie_embeddings={spec.tie_embeddings!r} applies to head='lm' (the classifier's head is a new "
            f"Linear(hidden, 1)); leave it None."
        )
    if isinstance(spec.layer_repeats, bool) or not isinstance(spec.layer_repeats, int) or spec.layer_repeats < 1:
        problems.append(f"layer_repeats={spec.layer_repeats!r} must be a positive integer (1: each layer runs once).")
    elif spec.layer_repeats > 1 and spec.head != "lm":
        problems.append(f"layer_repeats={spec.layer_repeats} (parameter sharing) is built for head='lm' only.")
    if spec.dropout_noise not in DROPOUT_NOISES:
        problems.append(f"dropout_noise={spec.dropout_noise!r} must be one of: {', '.join(map(repr, DROPOUT_NOISES))}.")
    elif spec.dropout_noise != "torch" and (spec.head != "lm" or spec.model != "gpt2"):
        problems.append(f"dropout_noise={spec.dropout_noise!r} is built for the GPT-2 LM (head='lm', model='gpt2') only.")

    sizes = _sizes(spec)
    if spec.pretrained_path is None:
        if spec.model in FINETUNE_MODELS and spec.head != "lm":
            problems.append(
                f"model={spec.model!r} fine-tunes pretrained weights: set pretrained_path to a local folder "
                f"written by save_pretrained (nothing is downloaded)."
            )
        elif n > 0 or lora_r:
            problems.append(
                f"finetune_layers={n} / lora_r={lora_r} freeze parts of a pretrained model; "
                f"{spec.model} without pretrained_path is built from scratch and trains everything."
            )
        if not problems:  # the shape, on the config alone
            refuse(make_config, spec.model, spec.vocab_size, spec.max_positions, **sizes, dropout=spec.dropout,
                   tie_embeddings=spec.tie_embeddings)
    else:
        given = [k for k, v in sizes.items() if v is not None]
        if given:
            problems.append(
                f"{', '.join(given)} cannot be set with pretrained_path: the shape comes from the checkpoint."
            )
        if spec.num_models != 1:
            problems.append(f"num_models={spec.num_models}: ensembles are built from scratch only.")
        if lora_r and n != 0:
            problems.append(
                f"lora_r={lora_r} with finetune_layers={n}: choose LoRA (finetune_layers=0) "
                f"or unfrozen layers, not both."
            )
        if not problems:
            problems.extend(_checkpoint_problems(spec))
    return problems


def _sizes(spec: DecoderSpec) -> dict[str, int | None]:
    return {name: getattr(spec, name) for name in SIZE_SETTINGS}


def _checkpoint_problems(spec: DecoderSpec) -> list[str]:
    """Does the checkpoint at spec.pretrained_path suit spec? Reads its config.json, no weights."""
    from transformers import AutoConfig

    path = os.fspath(spec.pretrained_path)
    if not os.path.isdir(path):
        return [f"pretrained_path={path!r} is not a folder (expected a save_pretrained folder with config.json "
                f"and the weights; nothing is downloaded)."]
    if not os.path.isfile(os.path.join(path, "config.json")):
        return [f"pretrained_path={path!r} holds no config.json (expected a save_pretrained folder)."]
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError) as exc:  # not JSON, or no model_type: transformers' own words, first line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [f"pretrained_path={path!r}: its config.json is not a model's ({reason}); expected a "
                f"save_pretrained folder."]
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    if not any(os.path.isfile(os.path.join(path, name)) for name in weights):
        return [f"pretrained_path={path!r} holds no weights ({' or '.join(weights[::2])}); expected a "
                f"save_pretrained folder."]
    expected = FINETUNE_MODELS.get(spec.model) or PRESETS[spec.model]["model_type"]
    if config.model_type != expected:
        return [f"pretrained_path={path!r} holds a {config.model_type} model, but model={spec.model!r} expects {expected}."]
    family = _FAMILIES[expected]
    problems = []
    if spec.vocab_size > config.vocab_size:
        problems.append(
            f"vocab_size={spec.vocab_size} exceeds the checkpoint's vocabulary ({config.vocab_size} tokens)."
        )
    if family.positions_field == "n_positions" and spec.max_positions > config.n_positions:
        problems.append(
            f"max_positions={spec.max_positions} exceeds the checkpoint's {config.n_positions} learned positions."
        )
    if spec.finetune_layers > config.num_hidden_layers:
        problems.append(
            f"finetune_layers={spec.finetune_layers} exceeds the checkpoint's {config.num_hidden_layers} decoder layers."
        )
    return problems


def build(spec: DecoderSpec) -> nn.Module:
    """The module spec describes: a classifier (``SequenceClassifier``, or ``EnsembleClassifier`` for
    num_models > 1) or a ``CausalLM``, in training mode. Expects a spec that ``check`` accepts
    (``models.build`` and ``build_classifier`` make sure). Uses the global torch RNG for
    initialisation only; seed before calling. ``module.spec`` records the spec (``save_model`` reads it).
    """
    if spec.pretrained_path is not None:  # recorded absolute, so that a saved model finds it from anywhere
        spec = dataclasses.replace(spec, pretrained_path=os.path.abspath(os.fspath(spec.pretrained_path)))
    if spec.head == "lm":
        module = _causal_lm(spec)
    elif spec.pretrained_path is None:
        config = make_config(spec.model, spec.vocab_size, spec.max_positions, **_sizes(spec), dropout=spec.dropout)
        family = _FAMILIES[config.model_type]
        dtype = PARAM_DTYPES[spec.param_dtype]
        if spec.num_models > 1 and spec.ensemble == "mean_hidden":
            backbones = [_scratch_backbone(config, family, spec.attn_implementation, dtype)
                         for _ in range(spec.num_models)]
            module = HiddenMeanEnsemble(backbones, spec.pooling)
        else:
            members = [
                SequenceClassifier(_scratch_backbone(config, family, spec.attn_implementation, dtype), spec.pooling)
                for _ in range(spec.num_models)
            ]
            module = members[0] if spec.num_models == 1 else LogitMeanEnsemble(members)
    else:
        module = _pretrained_member(spec)
    module.spec = spec  # read by save_model
    return module.train()


def _scratch_backbone(config, family: _Family, attn_implementation: str | None,
                      dtype: torch.dtype = torch.float32) -> nn.Module:
    """A backbone built from config; dtype: its parameters' (bf16: initialised in bf16, as transformers
    builds a model whose config names that dtype; computed buffers such as RoPE's stay float32)."""
    from transformers import AutoModel

    kwargs = {} if dtype == torch.float32 else {"dtype": dtype}  # float32: the call as it always was
    backbone = AutoModel.from_config(
        copy.deepcopy(config), attn_implementation=attn_implementation or family.attn_implementation, **kwargs
    )
    if config.model_type == "bloom":
        _compute_last_position_only(getattr(backbone, family.layers_attr)[-1])
    return _fused_activations(backbone)


def _compute_last_position_only(block: nn.Module) -> None:
    """Let BLOOM's final block compute only the last position when that is all the head reads.

    With "last" pooling and no attention mask (models built from scratch read BOS + symbols, never
    padded), the classifier reads the final hidden state at position -1 only. The final block's
    other positions feed nothing: it needs their keys and values, but its query, attention output,
    dense projection and MLP only at position -1. Computing just that removes about 40% of a
    2-layer model's matmul work (the 1000 training steps of bench/target_functions.py's reference
    job, 2-layer 128-wide BLOOM at L=20, batch 20: 10.4-12.8 s -> 7.7-8.0 s in interleaved runs).
    The result equals the full block's position -1 to float rounding, value and
    gradient (tests/test_models.py checks both against transformers' own block). The block's class
    becomes a subclass of BloomBlock with the same submodules, so parameter names, state dicts and
    saved models are unchanged; any call the shortcut does not cover runs the original forward.
    """
    block.__class__ = _last_position_bloom_block()
    block.last_position_only = False  # SequenceClassifier.forward sets it per call


@functools.cache
def _last_position_bloom_block() -> type:
    import torch.nn.functional as F
    from transformers.models.bloom.modeling_bloom import BloomBlock, dropout_add

    class LastPositionBloomBlock(BloomBlock):
        """BloomBlock whose forward, with ``last_position_only`` set, returns position -1 only: [batch, 1, hidden]."""

        def forward(self, hidden_states, alibi, attention_mask, layer_past=None, use_cache=False,
                    output_attentions=False, **kwargs):
            attention = self.self_attention
            if (not self.last_position_only or layer_past is not None or use_cache or output_attentions
                    or attention.pretraining_tp > 1 and attention.slow_but_exact):
                return super().forward(hidden_states, alibi, attention_mask, layer_past=layer_past,
                                       use_cache=use_cache, output_attentions=output_attentions, **kwargs)
            post_norm = self.apply_residual_connection_post_layernorm
            normed = self.input_layernorm(hidden_states)
            residual = (normed if post_norm else hidden_states)[:, -1:]
            batch, length, _ = normed.shape
            heads, head_dim = attention.num_heads, attention.head_dim
            # the fused projection's outputs are laid out [head, (query, key, value), head_dim] (see
            # BloomAttention._reshape): keys and values for every position, the query for the last only
            weight = attention.query_key_value.weight.view(heads, 3, head_dim, -1)
            bias = attention.query_key_value.bias.view(heads, 3, head_dim)
            kv = F.linear(normed, weight[:, 1:].reshape(heads * 2 * head_dim, -1), bias[:, 1:].reshape(-1))
            key, value = kv.view(batch, length, heads, 2, head_dim).unbind(3)  # [b, L, heads, d]
            query = F.linear(normed[:, -1], weight[:, 0].reshape(heads * head_dim, -1), bias[:, 0].reshape(-1))
            query = query.view(batch * heads, 1, head_dim)
            key = key.transpose(1, 2).reshape(batch * heads, length, head_dim).transpose(-1, -2)
            value = value.transpose(1, 2).reshape(batch * heads, length, head_dim)
            # alibi is [batch * heads, 1, L]: BLOOM's bias depends on the key position only
            scores = alibi.baddbmm(batch1=query, batch2=key, beta=attention.beta, alpha=attention.inv_norm_factor)
            scores = scores.view(batch, heads, 1, length)
            if attention_mask is not None:
                scores = scores + attention_mask[:, :, -1:, :]
            probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
            probs = attention.attention_dropout(probs)
            context = attention._merge_heads(torch.bmm(probs.view(batch * heads, 1, length), value))
            attended = dropout_add(attention.dense(context), residual, attention.hidden_dropout, self.training)
            normed = self.post_attention_layernorm(attended)
            return self.mlp(normed, normed if post_norm else attended), probs

    LastPositionBloomBlock.__module__ = __name__  # picklable as decoders.LastPositionBloomBlock (see below)
    LastPositionBloomBlock.__qualname__ = "LastPositionBloomBlock"
    return LastPositionBloomBlock


def __getattr__(name: str):
    # The class is built on first use (transformers is imported lazily); unpickling a whole model
    # (torch.save(model)) looks it up here by name, in a process that may not have built it yet.
    if name == "LastPositionBloomBlock":
        return _last_position_bloom_block()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fused_activations(backbone: nn.Module) -> nn.Module:
    """Swap BLOOM's Python-level tanh GELU (BloomGelu: a custom autograd function of ~10 element-wise
    ops) for torch's fused ``GELU(approximate="tanh")``: the same function, x/2 (1 + tanh(sqrt(2/pi)
    (x + 0.044715 x^3))), to float rounding, and it no longer dominates a small model's step on CPU
    (training step of a 2-layer, 128-wide BLOOM: 13 ms -> 9 ms). Other families are returned as is."""
    for module in backbone.modules():
        if type(module).__name__ == "BloomMLP":
            module.gelu_impl = nn.GELU(approximate="tanh")
    return backbone


def _pretrained_member(spec: DecoderSpec) -> SequenceClassifier:
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(spec.pretrained_path, local_files_only=True)
    family = _FAMILIES[config.model_type]
    for field in family.dropout_fields:
        setattr(config, field, float(spec.dropout))
    config.use_cache = False
    backbone = AutoModel.from_pretrained(
        spec.pretrained_path,
        config=config,
        local_files_only=True,
        # transformers 5 defaults to the checkpoint's dtype (often bf16): ask for the one wanted
        dtype=PARAM_DTYPES[spec.param_dtype],
        attn_implementation=spec.attn_implementation or family.attn_implementation,
    )
    member = SequenceClassifier(_fused_activations(backbone), spec.pooling)
    _choose_trainable(member, family, spec)
    return member


def _choose_trainable(member: SequenceClassifier, family: _Family, spec: DecoderSpec) -> None:
    n, lora_r = spec.finetune_layers, spec.lora_r
    backbone = member.backbone
    backbone.requires_grad_(n == -1)
    if n > 0:
        for layer in getattr(backbone, family.layers_attr)[-n:]:
            layer.requires_grad_(True)
        getattr(backbone, family.final_norm_attr).requires_grad_(True)
    if lora_r:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=lora_r,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            target_modules=list(family.lora_targets),
            fan_in_fan_out=family.lora_fan_in_fan_out,
            bias="none",
        )
        member.backbone = get_peft_model(backbone, lora)  # freezes all but the adapters
    member.head.requires_grad_(True)


# --------------------------------------------------------------------------------------------------
# The language model
# --------------------------------------------------------------------------------------------------


class CausalLM(nn.Module):
    """A decoder with its language-model head: next-token logits at every position.

    ``module(input_ids, attention_mask=None, output_attentions=False)`` returns float32 logits
    [batch, positions, vocab] (float32 also when the model runs in bf16). With
    ``output_attentions=True`` it returns ``(logits, attentions)``: per layer, the attention weights
    [batch, heads, positions, positions] (each row sums to 1; causal, so zero above the diagonal).

    ``positions=slice(a, b)`` returns the logits of those positions only, [batch, b - a, vocab], and
    computes only what they read: for GPT-2 on CPU (sdpa, no attention mask) the last block's
    attention output projection, MLP, final norm and head run on those positions alone (see
    ``_gpt2_rows``); other models, and GPUs (whose fused dropout draws its random numbers
    differently: not reproduced here, nor measured), run in full and are sliced.

    ``counter_noise`` (the spec's ``dropout_noise = "counter"`` with dropout > 0): on CPU the GPT-2 runs
    written out (``_gpt2_rows``), in training and in evaluation (its own attention of the rows computed,
    not sdpa's fused kernel on every row: ~20% less time per fp32 evaluation of the parity reference
    model, the same in bf16), and in training every dropout mask comes from ``counter_keep_mask``
    instead of torch's generator, keyed by the seed torch had when the model was built (the run's seed:
    the loop seeds before building) and by the number of training calls made before this one (the
    buffer ``dropout_calls``, which checkpoints save: a resumed run draws the masks the uninterrupted one
    would). The masks do not depend on how much of each tensor is computed, so each block asks for the
    noise of the rows it computes only; they are drawn in parallel on the run's torch threads, about 4x
    less time than torch's serial Mersenne twister needs for the whole tensors (a third of a training
    step of the parity reference model). With an attention mask, or on a GPU, the model's own forward
    runs, with torch's dropout.

    PyTorch's sdpa kernel computes no weights to return (transformers then silently returns none), so
    a call that asks for them runs the eager implementation, the same function written out, and
    switches back afterwards; training calls keep the faster kernel. ``lm`` is the transformers
    ``*ForCausalLM`` model.
    """

    def __init__(self, lm: nn.Module, counter_noise: bool = False):
        super().__init__()
        self.lm = lm
        self.counter_noise = counter_noise
        if counter_noise:
            self.register_buffer("dropout_key", torch.tensor(torch.initial_seed() % 2 ** 63))
            self.register_buffer("dropout_calls", torch.zeros((), dtype=torch.int64))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False,
        positions: slice | None = None,
    ):
        if (not output_attentions and attention_mask is None and input_ids.device.type == "cpu"
                and _selectable_gpt2(self.lm)):
            if self.counter_noise:  # training draws the call's masks; evaluation none (p = 0)
                noise = CounterNoise(self.dropout_key, self.dropout_calls.clone())
                if self.training:
                    self.dropout_calls += 1
                rows = slice(None) if positions is None else positions
                return _gpt2_rows(self.lm, input_ids, rows, noise).float()
            if positions is not None:
                return _gpt2_rows(self.lm, input_ids, positions, TORCH_NOISE).float()
        if positions is not None and not output_attentions:
            return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, positions].float()
        if not output_attentions:
            return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits.float()
        with _eager_attention(self.lm):
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, output_attentions=True)
        return out.logits.float(), tuple(out.attentions)


def _selectable_gpt2(lm: nn.Module) -> bool:
    """Whether _gpt2_rows reproduces this model's forward: a GPT-2 LM on sdpa attention with
    the default attention scaling and no cross-attention."""
    config = lm.config
    return (config.model_type == "gpt2" and config._attn_implementation == "sdpa" and config.scale_attn_weights
            and not config.scale_attn_by_inverse_layer_idx and not config.add_cross_attention)


def _part(dim: int, rows: slice) -> tuple:
    return (slice(None),) * dim + (rows,)


class TorchNoise:
    """nn.Dropout's masks (torch's composite ``at::dropout``, what it runs on CPU: noise = bernoulli(1 - p)
    over the whole tensor from torch's global generator, divided by 1 - p, times the input). A caller that
    computes only the part ``rows`` (along ``dim``) of a tensor of ``full_shape`` still draws the noise
    for the whole tensor, so the random stream, and the mask of the kept part, are those of the full
    forward. Embedding dropout runs the model's own module; blocks other than the last run as
    transformers' own (``own_blocks`` False)."""

    own_blocks = False

    def embedding(self, drop: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return drop(hidden)

    def __call__(self, x, full_shape, dim, rows, p, site):
        if p == 0:
            return x
        noise = torch.empty(full_shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p)
        noise.div_(1 - p)
        return x * noise[_part(dim, rows)]


TORCH_NOISE = TorchNoise()


class CounterNoise(TorchNoise):
    """The masks of one training call from ``counter_keep_mask``: ``site`` numbers the model's dropouts in
    forward order (0 the embedding; for block i: 3i + 1 attention, 3i + 2 residual after attention,
    3i + 3 after the MLP); the mask is applied as torch's (x times keep / (1 - p), in x's dtype). key and
    call are the model's 0-d buffers, read by the op ``dropout_noise``, which torch.func.vmap runs for a
    stack of models (stacking.py) as one noise per member, each its solo run's."""

    own_blocks = True

    def __init__(self, key: torch.Tensor, call: torch.Tensor):
        self.key, self.call = key, call

    def embedding(self, drop: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return self(hidden, hidden.shape, 1, slice(None), drop.p if drop.training else 0.0, 0)

    def __call__(self, x, full_shape, dim, rows, p, site):
        if p == 0:
            return x
        start, stop, _ = rows.indices(full_shape[dim])
        noise = dropout_noise(self.key, self.call, site, list(full_shape), dim, start, stop, 1 - p, x.dtype)
        return x * noise.to(x.device)


@torch.library.custom_op("reasoning_lab::dropout_noise", mutates_args=())
def dropout_noise(key: torch.Tensor, call: torch.Tensor, site: int, shape: list[int], dim: int, start: int, stop: int,
                  keep: float, dtype: torch.dtype) -> torch.Tensor:
    """torch's dropout noise (1 / keep in ``dtype``, rounded as torch's ``noise.div_(keep)`` rounds it, where
    kept; 0 elsewhere) for ``counter_keep_mask``'s mask of the 0-d tensors key and call (rows start..stop-1
    along dim)."""
    return counter_keep_mask(int(key), int(call), site, tuple(shape), dim, slice(start, stop), keep, dtype)


@dropout_noise.register_fake
def _(key, call, site, shape, dim, start, stop, keep, dtype):
    return key.new_empty([*shape[:dim], stop - start, *shape[dim + 1:]], dtype=dtype)


def _dropout_noise_batched(info, in_dims, key, call, site, shape, dim, start, stop, keep, dtype):
    members = info.batch_size
    keys = key.expand(members) if in_dims[0] is None else key.movedim(in_dims[0], 0)
    calls = call.expand(members) if in_dims[1] is None else call.movedim(in_dims[1], 0)
    return torch.stack([dropout_noise(k, c, site, shape, dim, start, stop, keep, dtype) for k, c in zip(keys, calls)]), 0


dropout_noise.register_vmap(_dropout_noise_batched)


_NOISE_PIECE = 1 << 16  # fewest mask elements worth a thread of their own
_noise_pool = None  # the threads that draw counter noise beside the caller's; none in a forked child


def _forget_noise_pool() -> None:
    global _noise_pool
    _noise_pool = None


os.register_at_fork(after_in_child=_forget_noise_pool)  # a pool's threads do not survive a fork


def counter_keep_mask(key: int, call: int, site: int, shape: tuple, dim: int, rows: slice, keep: float,
                      dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """A dropout keep-mask (bool, True with probability ``keep``) for the part ``rows`` along ``dim`` of a
    tensor of ``shape``: a pure function of (key, call, site) and of each element's place in the whole
    tensor, so the part's mask is the whole mask's part, whatever else is computed and on however
    many threads.

    Element e of the whole tensor in position-major order (``dim`` moved first, so that a range of
    rows is one range of e) is kept when the e-th 32-bit word of the stream of numpy's PCG64 seeded
    with ``SeedSequence([key, call, site])`` (``random_raw``, each 64-bit output little-endian: low word
    first) is below round(keep * 2^32). PCG64 jumps ahead in O(log n) steps (``advance``): any range
    is drawn without the words before it, so the range is split over torch's thread count and drawn
    in parallel (numpy releases the GIL), with the same result on one thread or many. numpy keeps
    PCG64's and SeedSequence's streams fixed across versions.

    With a floating ``dtype`` it returns dropout's noise instead of the mask: 1 / keep in that dtype
    (rounded as torch's ``noise.div_(keep)`` rounds it) where kept, 0 elsewhere, written by the same
    threads as the bit patterns of those two values (torch's own bool-to-bfloat16 conversion alone
    took longer than drawing the mask)."""
    import numpy as np

    length = shape[dim]
    start, stop, step = rows.indices(length)
    if step != 1:
        raise ValueError(f"rows={rows!r}: only contiguous rows have a mask range")
    others = shape[:dim] + shape[dim + 1:]
    per_row = math.prod(others)
    first, count = start * per_row, (stop - start) * per_row
    threshold = np.uint32(min(round(keep * 2 ** 32), 2 ** 32 - 1))
    seed = np.random.SeedSequence([key, call, site])
    part = (*shape[:dim], stop - start, *shape[dim + 1:])
    if dtype == torch.bool:
        out = np.empty(part, dtype=bool)
    else:  # the bit pattern of the kept value, as unsigned integers of the dtype's width
        value = torch.ones((), dtype=dtype).div_(keep)
        bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[value.element_size()]
        kept = bits(value.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[value.element_size()]).item()
                    % (1 << 8 * value.element_size()))
        out = np.empty(part, dtype=bits)
    by_row = np.moveaxis(out, dim, 0)  # the part in position-major order, written in place in the tensor's layout

    def fill(r0: int, r1: int) -> None:  # rows r0..r1-1 of the part
        word, skip = divmod(first + r0 * per_row, 2)
        stream = np.random.PCG64(seed)
        stream.advance(word)
        words = stream.random_raw((skip + (r1 - r0) * per_row + 1) // 2).astype("<u8", copy=False).view("<u4")
        words = words[skip:skip + (r1 - r0) * per_row].reshape(r1 - r0, *others)
        if dtype == torch.bool:
            np.less(words, threshold, out=by_row[r0:r1])
        else:
            np.multiply(np.less(words, threshold), kept, out=by_row[r0:r1])

    rows_n = stop - start
    pieces = max(1, min(torch.get_num_threads(), rows_n, count // _NOISE_PIECE))
    bounds = [rows_n * i // pieces for i in range(pieces + 1)]
    if pieces > 1:
        global _noise_pool
        if _noise_pool is None or _noise_pool._max_workers < pieces - 1:
            import concurrent.futures
            if _noise_pool is not None:
                _noise_pool.shutdown(wait=False)
            _noise_pool = concurrent.futures.ThreadPoolExecutor(max_workers=pieces - 1, thread_name_prefix="dropout-noise")
        jobs = [_noise_pool.submit(fill, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
    fill(0, bounds[1])  # the first piece on this thread, the others on the pool's
    for job in jobs if pieces > 1 else ():
        job.result()
    mask = torch.from_numpy(out)
    return mask if dtype == torch.bool else mask.view(dtype)


def _conv1d_columns(conv: nn.Module, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Output features start..stop-1 of GPT-2's Conv1D (``addmm(bias, x, weight)``, weight [in, out])
    alone: the same values as those columns of the whole layer's output."""
    out = torch.addmm(conv.bias[start:stop], x.reshape(-1, x.shape[-1]), conv.weight[:, start:stop])
    return out.view(*x.shape[:-1], stop - start)


def _causal_attention_rows(query, key, value, rows: slice, scale: float, p: float, noise: TorchNoise,
                           site: int) -> torch.Tensor:
    """Rows ``rows`` (query positions) of causal attention with dropout p, [batch, heads, len, head_dim],
    from the queries of those rows ([batch, heads, len, head_dim]) and every key and value, computed as
    torch's sdpa computes it on CPU when dropout is on (its math kernel: half types upcast to float;
    q and k^T each scaled by sqrt(scale); -inf above the diagonal; softmax; dropout noise for the
    [batch, heads, T, T] map; times v): with TorchNoise the same values and random stream as the full
    call (tests/test_model_layer.py). The counter noise's written-out model keeps half types in the two
    products (accumulated in float by the matmul kernel) and computes the softmax in float, as GPU
    attention kernels do, instead of upcasting everything (a bf16 step of the parity reference model
    spent ~15% on the float products and the casts)."""
    dtype = query.dtype
    half = dtype in (torch.float16, torch.bfloat16)
    if half and not noise.own_blocks:
        query, key, value = query.float(), key.float(), value.float()
    length = key.shape[-2]
    factor = math.sqrt(scale)
    scores = ((query * factor) @ (key.transpose(-2, -1) * factor)).float()
    causal = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
    mask = torch.where(causal.logical_not(), -math.inf, torch.scalar_tensor(0.0, dtype=scores.dtype, device=query.device))
    probs = torch.softmax(scores + mask[rows], dim=-1).to(value.dtype)
    probs = noise(probs, (*probs.shape[:2], length, length), 2, rows, p, site)
    return (probs @ value).to(dtype)


def _gpt2_rows(lm: nn.Module, input_ids: torch.Tensor, rows: slice, noise: TorchNoise) -> torch.Tensor:
    """GPT2LMHeadModel's logits at positions ``rows`` only ([batch, len, vocab], the model's dtype), on CPU.

    The function is the model's forward (no attention mask, no cache), op for op. With TorchNoise every
    block but the last runs as transformers' own; with CounterNoise every block runs written out
    (``_gpt2_block``), on every row. The last block computes its keys and values for every position,
    then its queries and attention for the rows ``rows`` only where sdpa runs its math kernel (training
    on CPU with dropout; otherwise every row through sdpa, as the model does), attention output projection,
    residual dropout, second norm, MLP and dropout, the final norm and the head for ``rows`` only:
    nothing at the other positions reaches these logits. With a loss on a few positions (sparse parity with CoT:
    7 of 27) that removes about half of a 1-layer model's matmul work and most of its GELU, forward
    and backward. TorchNoise draws its noise for the whole tensors, in the model's order, so the random
    stream is the full forward's; the kept positions' values equal the full forward's up to float
    summation order in the matmuls (tests/test_model_layer.py compares them)."""
    backbone = lm.transformer
    length = input_ids.shape[1]
    position_ids = torch.arange(length, device=input_ids.device).unsqueeze(0)
    hidden = backbone.wte(input_ids) + backbone.wpe(position_ids)
    hidden = noise.embedding(backbone.drop, hidden)
    *first, last = backbone.h
    for index, block in enumerate(first):
        if noise.own_blocks:
            hidden = _gpt2_block(block, hidden, slice(None), noise, 1 + 3 * index)
        else:
            hidden = block(hidden, None, None, use_cache=False, position_ids=position_ids)
    hidden = _gpt2_block(last, hidden, rows, noise, 1 + 3 * len(first))
    return lm.lm_head(backbone.ln_f(hidden))


def _gpt2_block(block: nn.Module, hidden: torch.Tensor, rows: slice, noise: TorchNoise, site: int) -> torch.Tensor:
    """One GPT2Block (no mask, no cache) written out, its output at the positions ``rows`` only: keys and
    values at every position, the rest at ``rows`` (see ``_gpt2_rows``); ``site`` numbers its attention
    dropout, site + 1 and site + 2 its two residual dropouts."""
    attention = block.attn
    training = attention.training
    batch, length = hidden.shape[:2]
    start, stop, _ = rows.indices(length)
    whole = start == 0 and stop == length
    x = block.ln_1(hidden)
    width = attention.split_size
    p = attention.attn_dropout.p if training else 0.0
    heads = lambda t: t.view(*t.shape[:2], -1, attention.head_dim).transpose(1, 2)  # noqa: E731
    if (p > 0 or noise.own_blocks) and length > 1:  # sdpa's math kernel: the selected query rows alone
        # c_attn is [q | k | v]: the queries of those rows alone. In half types the input gradient of two
        # products is rounded twice more than one product's: TorchNoise, whose numbers are the full
        # forward's, keeps one product there; the counter noise's written-out model takes the two
        if (x.dtype == torch.float32 or noise.own_blocks) and not whole:
            query = _conv1d_columns(attention.c_attn, x[:, rows], 0, width)
            key, value = _conv1d_columns(attention.c_attn, x, width, 3 * width).split(width, dim=2)
        else:
            query, key, value = attention.c_attn(x).split(width, dim=2)
            query = query[:, rows]
        out = _causal_attention_rows(heads(query), heads(key), heads(value), rows, attention.scaling, p, noise, site)
    else:  # sdpa's fused kernel (evaluation with torch's noise): every row, as the model computes them
        query, key, value = (heads(t) for t in attention.c_attn(x).split(width, dim=2))
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=p,
                                             scale=attention.scaling, is_causal=length > 1)[:, :, rows]
    out = out.transpose(1, 2)  # [batch, len, heads, head_dim]
    out = attention.c_proj(out.reshape(*out.shape[:-2], -1).contiguous())
    full = (batch, length, out.shape[-1])
    resid_p = attention.resid_dropout.p if training else 0.0
    hidden = noise(out, full, 1, rows, resid_p, site + 1) + hidden[:, rows]
    mlp = block.mlp
    out = mlp.c_proj(mlp.act(mlp.c_fc(block.ln_2(hidden))))
    return hidden + noise(out, full, 1, rows, mlp.dropout.p if training else 0.0, site + 2)


@contextlib.contextmanager
def _eager_attention(model: nn.Module):
    current = model.config._attn_implementation
    if current == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(current)


def _causal_lm(spec: DecoderSpec) -> CausalLM:
    from transformers import AutoModelForCausalLM

    config = make_config(spec.model, spec.vocab_size, spec.max_positions, **_sizes(spec), dropout=spec.dropout,
                         tie_embeddings=spec.tie_embeddings)
    family = _FAMILIES[config.model_type]
    lm = AutoModelForCausalLM.from_config(config, attn_implementation=spec.attn_implementation or family.attn_implementation)
    if spec.layer_repeats > 1:
        _repeat_layers(lm.base_model, family, spec.layer_repeats)
    return CausalLM(_fused_activations(lm), counter_noise=spec.dropout_noise == "counter" and spec.dropout > 0)


def _repeat_layers(backbone: nn.Module, family: _Family, repeats: int) -> None:
    """Make the backbone run its decoder layers `repeats` times in order, the same modules each time.

    The ModuleList holds each layer `repeats` times: parameters() and the optimiser see each parameter
    once; state_dict names the aliases too (save_model drops them). The config keeps the number of
    distinct layers, which also sets GPT-2's residual-projection init (std / sqrt(2 n_layer)). No KV
    cache is used (use_cache=False), so the repeated layer index is harmless."""
    layers = getattr(backbone, family.layers_attr)
    setattr(backbone, family.layers_attr, nn.ModuleList(list(layers) * repeats))


def memory_floor(spec: DecoderSpec, batch: int, training: bool) -> dict[str, int]:
    """Bytes a forward pass of `batch` sequences of spec.max_positions tokens certainly holds at once
    (float32, or bf16 for bf16 parameters), by what holds them: a lower bound for refusing a run that cannot fit, not a prediction of its peak.

    Training keeps, for the backward pass, at least four width-sized activations per layer and token
    (layer input, attention output, MLP input, MLP output) and, with eager attention (BLOOM), the attention
    probabilities of every layer; an evaluation holds one layer's at a time. A checkpoint's shape is not
    read here: an empty dict for pretrained models.
    """
    if spec.pretrained_path:
        return {}
    preset = PRESETS[spec.model]
    family = _FAMILIES[preset["model_type"]]
    size = {name: getattr(spec, name) or _preset_value(preset, family, name) for name in ("n_layer", "n_head", "n_embd")}
    layers = (size["n_layer"] * spec.layer_repeats if training else 1) * max(1, spec.num_models)
    positions = spec.max_positions
    of = f"{batch:,} sequences x {positions:,} positions"
    per_layer = f"{layers} layer{'s' * (layers > 1)}"
    floats = {f"hidden states of {of} x width {size['n_embd']} x {per_layer}":
              batch * positions * size["n_embd"] * (4 if training else 2) * layers}
    if (spec.attn_implementation or family.attn_implementation) == "eager":
        floats[f"attention probabilities of {of}\u00b2 x {size['n_head']} heads x {per_layer}"] = \
            batch * size["n_head"] * positions ** 2 * layers
    width = 2 if spec.param_dtype == "bfloat16" else 4  # bytes an activation element takes at least
    return {what: width * count for what, count in floats.items()}


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy in Hugging Face's convention.

    labels are aligned with input_ids ([batch, positions]; ``labels = input_ids`` is plain language
    modelling) and shifted here: logits[:, t] is scored against labels[:, t + 1]. Labels -100 are
    ignored (prompt tokens, padding). reduction "sum" adds the kept positions' losses; "mean" divides
    by their number (0, not NaN, when no position is kept). Computed in float32.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r} must be 'mean' or 'sum'.")
    vocab = logits.shape[-1]
    targets = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(
        logits[:, :-1].reshape(-1, vocab).float(), targets, ignore_index=-100, reduction="sum"
    )
    if reduction == "sum":
        return total
    return total / (targets != -100).sum().clamp(min=1)


def describe(model_name: str) -> str:
    """One paragraph on what a model name builds."""
    _check_name(model_name)
    if model_name in FINETUNE_MODELS:
        family = FINETUNE_MODELS[model_name]
        return (
            f"{model_name}: loads a local {family} checkpoint from pretrained_path (required; nothing is "
            f"downloaded) and adds a one-logit head. finetune_layers=0 trains only the head, N>0 also the "
            f"top N decoder layers and the final norm, -1 everything; lora_r>0 adds LoRA adapters on "
            f"{', '.join(_FAMILIES[family].lora_targets)} and trains them with the head."
        )
    preset = PRESETS[model_name]
    family = _FAMILIES[preset["model_type"]]
    shape = {s: _preset_value(preset, family, s) for s in SIZE_SETTINGS if s != "n_layer"}
    shape["n_layer"] = preset[family.fields["n_layer"]]
    extras = []
    if "rope_parameters" in preset:
        rope = preset["rope_parameters"]
        scaling = "" if rope["rope_type"] == "default" else f", {rope['rope_type']} scaling x{rope['factor']:g}"
        extras.append(f"RoPE theta {rope['rope_theta']:g}{scaling}")
    elif family.positions_field is None:
        extras.append("ALiBi positions")
    else:
        extras.append("learned positions")
    extras.append("tied embeddings" if preset.get("tie_word_embeddings") else "untied embeddings")
    kv_heads = f"{shape['n_kv_head']} kv heads, " if "n_kv_head" in family.fields else ""
    return (
        f"{model_name}: {_PRESET_SOURCES[model_name]} shape ({preset['model_type']}), built from scratch: "
        f"{shape['n_layer']} layers, hidden {shape['n_embd']}, intermediate {shape['intermediate_size']}, "
        f"{shape['n_head']} heads, {kv_heads}head dim {shape['head_dim']}; "
        f"{', '.join(extras)}. Vocabulary and positions come from the task; shrink with "
        f"{', '.join(s for s in SIZE_SETTINGS if s in family.fields)}."
    )


# --------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------

_ARGS_FILE = "classifier.json"
_WEIGHTS_FILE = "classifier.safetensors"


def save_model(module: nn.Module, path: str | os.PathLike) -> None:
    """Write a decoder built from a ``DecoderSpec`` (classifier or LM) to the folder ``path``.

    From scratch: every tensor (a tied LM head once, under the embedding's name). Pretrained: only the
    trainable tensors (head, unfrozen layers, or LoRA adapters + head); ``load_model`` takes the frozen
    rest from ``pretrained_path`` again.
    """
    from safetensors.torch import save_file

    from results import atomic_replace, atomic_write

    spec = getattr(module, "spec", None)
    if not isinstance(spec, DecoderSpec):
        raise ValueError("save_model needs a module built from a DecoderSpec (it records how to rebuild it).")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.pretrained_path is None:
        kind, tensors = "full", _without_aliases(module.state_dict())
    else:
        kind, tensors = "trainable", {n: p for n, p in module.named_parameters() if p.requires_grad}
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_replace(folder / _WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"kind": kind}))
    args = dataclasses.asdict(spec)
    atomic_write(folder / _ARGS_FILE, json.dumps({"weights": kind, "build_args": args}, indent=2, sort_keys=True) + "\n")


def _without_aliases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with each tensor once: a tied LM head shares the embedding's storage, which
    safetensors refuses to write twice; the rebuilt model ties it again."""
    seen, kept = set(), {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        kept[name] = tensor
    return kept


def load_model(path: str | os.PathLike, *, pretrained_path: str | None = None) -> nn.Module:
    """Rebuild a decoder written by ``save_model``; returned in eval mode, on the CPU.

    pretrained_path: where the base checkpoint lives now, if it moved since saving. The caller's RNG
    state is left as it was.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    folder = Path(path)
    info = json.loads((folder / _ARGS_FILE).read_text())
    args = dict(info["build_args"])  # folders written before head / tie_embeddings existed lack them
    if pretrained_path is not None:
        args["pretrained_path"] = pretrained_path
    with torch.random.fork_rng(devices=[]):  # initial weights are overwritten; keep the caller's RNG
        module = build(checked(DecoderSpec(**args)))
    weights_file = folder / _WEIGHTS_FILE
    with safe_open(str(weights_file), framework="pt") as f:
        kind = f.metadata()["kind"]
    tensors = load_file(str(weights_file))
    if kind == "full":
        expected = set(_without_aliases(module.state_dict()))
    else:
        expected = {n for n, p in module.named_parameters() if p.requires_grad}
    if set(tensors) != expected:
        raise ValueError(
            f"{weights_file}: saved tensors do not match the rebuilt model's "
            f"{'tensors' if kind == 'full' else 'trainable ones'} "
            f"(missing {sorted(expected - set(tensors))[:5]}, extra {sorted(set(tensors) - expected)[:5]})."
        )
    module.load_state_dict(tensors, strict=False)
    return module.eval()


def load_tokenizer(pretrained_path: str):
    """The checkpoint's tokenizer (local files only), with a pad token and right-side padding.

    A missing pad token becomes the eos (or unk) token, so the vocabulary and the embedding table keep
    their size; padded positions are excluded by the attention mask anyway. Right padding keeps the
    real tokens at positions 0..n-1, as in pretraining.
    """
    from transformers import AutoTokenizer

    known = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
    if not any(os.path.isfile(os.path.join(pretrained_path, name)) for name in known):
        raise ModelConfigError(
            f"pretrained_path={pretrained_path!r} holds no tokenizer (none of {', '.join(known)}): save it next "
            f"to the weights with tokenizer.save_pretrained(path); strings reach the model through it."
        )
    tokenizer = AutoTokenizer.from_pretrained(pretrained_path, local_files_only=True)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is not None:
            tokenizer.pad_token = fallback
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.padding_side = "right"
    return tokenizer
