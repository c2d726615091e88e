"""The model registry: what tasks and users call to get a model.

Each model kind lives in its own module; this one names them:

* ``decoders``: Hugging Face decoders (Qwen3, Llama, DeepSeek, BLOOM, GPT-2) built from published
  shapes or loaded from a local checkpoint, with a one-logit classifier head.
"""

from __future__ import annotations

from decoders import (  # noqa: F401  (re-exported: the registry's public names)
    FINETUNE_MODELS,
    MODEL_NAMES,
    PRESETS,
    SIZE_SETTINGS,
    EnsembleClassifier,
    ModelConfigError,
    SequenceClassifier,
    build_classifier,
    count_parameters,
    describe,
    load_model,
    load_tokenizer,
    make_config,
    save_model,
)

__all__ = [
    "PRESETS",
    "FINETUNE_MODELS",
    "MODEL_NAMES",
    "SIZE_SETTINGS",
    "ModelConfigError",
    "SequenceClassifier",
    "EnsembleClassifier",
    "make_config",
    "build_classifier",
    "count_parameters",
    "describe",
    "save_model",
    "load_model",
    "load_tokenizer",
]


def __getattr__(name: str):
    # Whole models pickled before the decoders moved name their BLOOM block models.LastPositionBloomBlock;
    # it is built on first use, so it is looked up here rather than imported above.
    if name == "LastPositionBloomBlock":
        import decoders

        return decoders.LastPositionBloomBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
