"""The model registry: every model kind, built from a spec. Tasks and users call this module.

A task states the model it wants as one small frozen data class, a spec, and uses it twice:
``models.check(spec)`` while its settings are validated (a list of problems phrased for the user, no
weights built) and ``models.build(spec)`` when the run starts. The kinds, each in its own module:

=====================  ====================  ===================================================
spec                   module                builds
=====================  ====================  ===================================================
``DecoderSpec``        decoders.py           a Hugging Face decoder (Qwen3, Llama, DeepSeek, BLOOM,
                                             GPT-2) from a published shape or a local checkpoint,
                                             with a one-logit classifier head or a causal-LM head
``GroupMLPSpec``       group_mlp.py          the group-arithmetic MLP (one-hot operands, W, act, V)
``AttentionOnlySpec``  attention_only.py     the associative-memory AoT; W > 0: with an MLP
``LowRankSpec``        attention_only.py     the associative-memory low-rank baseline
=====================  ====================  ===================================================

``lm_loss`` scores a causal LM's logits (Hugging Face's label convention); ``count_parameters`` counts
any module's parameters. The decoders' older keyword entry points (``build_classifier``,
``make_config``, ``save_model``, ``load_model``, ...) are exported here as well.
"""

from __future__ import annotations

import attention_only
import decoders
import group_mlp
from attention_only import AttentionOnlySpec, LowRank, LowRankSpec, MemoryTransformer, ParallelHeads
from decoders import (
    FINETUNE_MODELS,
    HEADS,
    MODEL_NAMES,
    PRESETS,
    SIZE_SETTINGS,
    CausalLM,
    DecoderSpec,
    EnsembleClassifier,
    HiddenMeanEnsemble,
    LogitMeanEnsemble,
    ModelConfigError,
    SequenceClassifier,
    build_classifier,
    describe,
    lm_loss,
    load_model,
    load_tokenizer,
    make_config,
    save_model,
)
from group_mlp import GroupMLP, GroupMLPSpec
from torch import nn

__all__ = [
    "build",
    "check",
    "KINDS",
    "ModelConfigError",
    "DecoderSpec",
    "GroupMLPSpec",
    "AttentionOnlySpec",
    "LowRankSpec",
    "LowRank",
    "SequenceClassifier",
    "EnsembleClassifier",
    "LogitMeanEnsemble",
    "HiddenMeanEnsemble",
    "CausalLM",
    "GroupMLP",
    "MemoryTransformer",
    "ParallelHeads",
    "lm_loss",
    "count_parameters",
    "memory_floor",
    "PRESETS",
    "FINETUNE_MODELS",
    "MODEL_NAMES",
    "SIZE_SETTINGS",
    "HEADS",
    "make_config",
    "build_classifier",
    "describe",
    "save_model",
    "load_model",
    "load_tokenizer",
]

# spec class -> the module that checks and builds it (each has check(spec) -> list[str], build(spec))
KINDS = {
    DecoderSpec: decoders,
    GroupMLPSpec: group_mlp,
    AttentionOnlySpec: attention_only,
    LowRankSpec: attention_only,
}


def _kind(spec):
    kind = KINDS.get(type(spec))
    if kind is None:
        raise TypeError(f"{spec!r} is not a model spec; models builds {', '.join(c.__name__ for c in KINDS)}.")
    return kind


def check(spec) -> list[str]:
    """What is wrong with spec: one sentence per problem, naming the field; empty if it builds.
    Builds no weights (settings validation calls it before anything is queued)."""
    return _kind(spec).check(spec)


def build(spec) -> nn.Module:
    """The model spec describes, in training mode; ModelConfigError (every problem, one per line) if
    ``check`` refuses it. Initialisation draws from the global torch RNG only: seed before calling."""
    kind = _kind(spec)
    problems = kind.check(spec)
    if problems:
        raise ModelConfigError("\n".join(problems))
    return kind.build(spec).train()


def memory_floor(spec, batch: int, training: bool) -> dict[str, int]:
    """{what: bytes} a forward (training: and what backward needs) of `batch` examples certainly holds at
    once; a lower bound, empty where the model kind does not say (see decoders.memory_floor)."""
    floor = getattr(_kind(spec), "memory_floor", None)
    return floor(spec, batch, training) if floor else {}


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) numbers of scalar parameters; shared tensors count once."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def __getattr__(name: str):
    # Whole models pickled before the decoders moved name their BLOOM block models.LastPositionBloomBlock;
    # it is built on first use, so it is looked up here rather than imported above.
    if name == "LastPositionBloomBlock":
        return decoders.LastPositionBloomBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
