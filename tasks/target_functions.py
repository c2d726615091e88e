"""Programme: can a transformer learn a rule with a short description (parity, patterns, primality,
Dyck-2, ...) from a few hundred labelled strings? (reference/target_functions.md)

Binary classification with one logit: BCEWithLogits, AdamW, cosine to eta_min per step, clip 1.0.
"""
import dataclasses
import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import collators
import target_functions as tf
import models
from results import ResultsError, atomic_replace
from settings import CommonSettings, setting, with_defaults
from tasks.base import Data
from tasks.base import Task as BaseTask


@with_defaults(n_epochs=30, eval_every=5)
class Settings(CommonSettings):
    task: str = setting("target_functions", "the research programme (a module of tasks/)")
    target_func: str = setting("func10", "ground-truth function func1..func22 (see target_functions.py)")
    sequence_length: int = setting(20, "length L of the input strings", low=1)
    train_set_size: int = setting(200, "training examples (even: the pool is exactly 50/50)", low=2)
    test_set_size: int = setting(2000, "test examples (even)", low=2)
    fixed_positions: str = setting(
        "portable", "func15/func18: which positions the parity reads. portable: a seeded permutation that "
        "depends on no library (this project's default); original: the original code's, the first k of "
        "torch.randperm(L) after torch.manual_seed(42) (e.g. L=100: {42, 62, 96}), which a torch release "
        "could change", choices=("portable", "original"))
    palindrome_negatives: str = setting(
        "fresh", "func17: fresh = each negative a one-bit flip of a palindrome of its own, the pool exactly 50/50 "
        "(this project's default); paired = the original's: each negative a one-bit flip of one of the pool's "
        "positives, labels recomputed and kept (at odd L a flipped middle bit stays a palindrome, and these "
        "join the test set's positives: 54% of it at L = 25)", choices=("fresh", "paired"))
    data_cache: bool = setting(True, "cache generated splits under .cache/ (key includes the generator version)")
    model: str = setting("bloom", "model preset (models.MODEL_NAMES) or a *_finetune model")
    n_layer: int | None = setting(2, "decoder layers (None: the preset's)", low=1)
    n_head: int | None = setting(4, "attention heads (None: the preset's)", low=1)
    n_embd: int | None = setting(128, "hidden width (None: the preset's)", low=1)
    n_kv_head: int | None = setting(None, "key/value heads of grouped-query attention (None: preset's or n_head)", low=1)
    intermediate_size: int | None = setting(None, "MLP width (None: preset's, scaled with n_embd)", low=1)
    head_dim: int | None = setting(None, "attention head dimension (None: n_embd // n_head)", low=1)
    pooling: str = setting("last", "logit from the last position or the mean over positions",
                           choices=("last", "mean"))
    num_models: int = setting(1, "ensemble size: independently initialised models combined as `ensemble` says",
                              low=1)
    ensemble: str = setting(
        "mean_logits", "num_models > 1: mean_logits = each model has its own head and their logits are "
        "averaged (this project's default); mean_hidden = the models' last hidden states are averaged and "
        "one shared head reads the average (what the original's bloom ensemble computed)",
        choices=("mean_logits", "mean_hidden"))
    model_dtype: str = setting(
        "float32", "dtype of the decoder's parameters (not autocast): bfloat16 stores the weights, the "
        "optimiser's update and its state in bf16, so updates smaller than a weight's bf16 spacing round "
        "away; the head stays float32. The original's from-scratch Qwen3/DeepSeek (built from the hub "
        "configs' bf16 dtype) and its fine-tuned models ran so", choices=("float32", "bfloat16"))
    dropout: float = setting(0.0, "dropout inside the decoder", low=0.0, high=1.0)
    pretrained_path: str | None = setting(None, "local folder of a pretrained model (save_pretrained layout)")
    finetune_layers: int = setting(0, "with pretrained_path: train the head plus this many top layers "
                                   "(0: head only, -1: everything)", low=-1)
    head_only: bool = setting(
        False, "with pretrained_path: train only the new head, whatever finetune_layers says (what the "
        "original's fine-tuning really did: its reentrant gradient checkpointing behind frozen embeddings "
        "let no gradient reach the layers it unfroze); finetune_layers is then only recorded")
    original_truncation: bool = setting(
        False, "with pretrained_path: cut every tokenized input to L + 2 tokens, as the original's collator "
        "did (max_length = L + 2, truncation, padding to that length). With tokenizers that give each "
        "space its own token (Qwen2/Qwen3, Llama-3, DeepSeek-coder) the model then reads only about the "
        "first half of the L digits. False: the whole string")
    lora_r: int = setting(0, "with pretrained_path: LoRA rank (0: no LoRA)", low=0)
    lora_alpha: int = setting(16, "LoRA alpha", low=1)
    batch_size: int = setting(20, "training batch size; 0 means the whole training set", low=0)
    lr: float = setting(1e-3, "peak learning rate", low=0.0)
    eta_min: float = setting(1e-5, "final learning rate of the cosine schedule", low=0.0)
    weight_decay: float = setting(0.01, "AdamW weight decay", low=0.0)
    eval_batch_size: int = setting(512, "batch size of evaluations (512 strings: faster on a CPU than one "
                                   "big batch, and bounded memory for the paper-size models)", low=1)

    def __post_init__(self):
        # A pretrained model's shape comes from its checkpoint: the small from-scratch default sizes
        # (2 layers, 4 heads, width 128) do not apply and are recorded as None. A size set to anything
        # else next to pretrained_path is refused by check().
        if self.pretrained_path:
            for name in models.SIZE_SETTINGS:
                if getattr(self, name) == SIZE_DEFAULTS[name]:
                    setattr(self, name, None)

    def check(self):
        problems = super().check()
        try:
            spec = tf.get(self.target_func)
        except ValueError as exc:
            problems.append(f"target_func: {exc}")
        else:
            reason = spec.length_error(self.sequence_length)
            if reason:
                problems.append(f"sequence_length = {self.sequence_length} does not suit {self.target_func}: {reason}")
            strings = tf.BOS[spec.alphabet] ** min(self.sequence_length, 64)  # symbols ** L
            if self.train_set_size + self.test_set_size > strings:
                problems.append(f"sequence_length = {self.sequence_length} gives only {strings} distinct strings, fewer "
                                f"than train_set_size + test_set_size = {self.train_set_size + self.test_set_size}: "
                                "the test set would repeat training strings; raise sequence_length or lower the sizes")
            # the model now (its config or the checkpoint's config.json, no weights), not when the job starts
            problems.extend(models.check(self.model_spec()))
        for name in ("train_set_size", "test_set_size"):
            if getattr(self, name) % 2:
                problems.append(f"{name} = {getattr(self, name)} must be even (the pool is exactly half positive)")
        if self.model_dtype == "bfloat16" and self.mixed_precision == "fp16":
            problems.append("model_dtype = 'bfloat16' cannot go with mixed_precision = 'fp16' (fp16 autocast on "
                            "bf16 weights); use mixed_precision = 'bf16', 'auto' or 'no'")
        if self.head_only and self.lora_r:
            problems.append(f"head_only = True with lora_r = {self.lora_r}: head_only trains the head alone; "
                            "set lora_r = 0 or head_only = False")
        return problems

    def notes(self):
        notes = super().notes()
        if not self.pretrained_path:
            given = [f"{name} = True" for name in ("head_only", "original_truncation") if getattr(self, name)]
            if given:
                notes.append(f"{' and '.join(given)} has no effect without pretrained_path: a model built from "
                             "scratch trains everything and reads token ids, not tokenized text")
        elif self.head_only and self.finetune_layers != 0:
            notes.append(f"finetune_layers = {self.finetune_layers} is recorded but has no effect with head_only "
                         "= True: only the head trains (as in the original, whose unfrozen layers got no gradient)")
        if self.fixed_positions != "portable":
            try:
                reads_positions = bool(tf.get(self.target_func).n_positions)
            except ValueError:
                reads_positions = True  # an unknown function is refused by check()
            if not reads_positions:
                notes.append(f"fixed_positions = {self.fixed_positions!r} has no effect on {self.target_func}: "
                             "only func15 and func18 read fixed positions")
        if self.palindrome_negatives != "fresh" and self.target_func != "func17":
            notes.append(f"palindrome_negatives = {self.palindrome_negatives!r} has no effect on {self.target_func}: "
                         "only func17 (palindrome) draws its negatives from palindromes")
        return notes

    def model_spec(self):
        """The classifier these settings ask for: symbols after BOS, so the alphabet + BOS is the
        vocabulary and L + 2 positions are enough."""
        return models.DecoderSpec(
            model=self.model, vocab_size=tf.vocab_size(tf.get(self.target_func).alphabet),
            max_positions=self.sequence_length + 2, n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
            n_kv_head=self.n_kv_head, intermediate_size=self.intermediate_size, head_dim=self.head_dim,
            dropout=self.dropout, head="classifier", pooling=self.pooling, num_models=self.num_models,
            ensemble=self.ensemble, param_dtype=self.model_dtype, pretrained_path=self.pretrained_path,
            finetune_layers=0 if self.head_only and self.pretrained_path else self.finetune_layers,
            lora_r=self.lora_r, lora_alpha=self.lora_alpha)


SIZE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings) if f.name in models.SIZE_SETTINGS}


def _cached_split(s):
    """The split, from the on-disk cache when an identical request (same generator version) was made."""
    args = dict(name=s.target_func, L=s.sequence_length, train_size=s.train_set_size,
                test_size=s.test_set_size, seed=s.seed)
    if s.fixed_positions != "portable" and tf.get(s.target_func).n_positions:
        # explicit positions, part of the cache key (the portable default keeps the keys it always had)
        args["positions"] = list(tf.get(s.target_func).positions(s.sequence_length, rule=s.fixed_positions))
    if s.palindrome_negatives != "fresh" and s.target_func == "func17":  # (the default keeps the keys it had)
        args["palindrome_negatives"] = s.palindrome_negatives
    if not s.data_cache:
        return tf.make_split(**args), False
    key = hashlib.sha256(json.dumps({**args, "generator": tf.GENERATOR_VERSION}, sort_keys=True).encode())
    path = Path(".cache") / "target_functions" / f"{key.hexdigest()[:24]}.pt"
    if path.exists():
        try:
            return tf.Split(**torch.load(path, weights_only=False)), True
        except Exception:
            pass  # unreadable cache entry: regenerate and overwrite it
    split = tf.make_split(**args)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_replace(path, lambda tmp: torch.save(dataclasses.asdict(split), tmp))
    except (OSError, RuntimeError, ResultsError):
        pass  # a cache that cannot be written (read-only or full disk) only costs time; no file is left
    return split, False


class Task(BaseTask):
    name = "target_functions"
    Settings = Settings
    # the decoders from scratch (every preset, ensembles, both poolings) run under torch.func.vmap
    stackable = True

    @classmethod
    def stack_refusal(cls, s):
        if s.pretrained_path:
            return ("a pretrained model (fine-tuning, LoRA) is not stacked: its frozen layers, PEFT wrappers and "
                    "tokenizer attention masks have not been verified under vmap")
        return None

    def build_data(self):
        s = self.settings
        split, cached = _cached_split(s)
        alphabet = tf.get(s.target_func).alphabet
        if s.pretrained_path:
            tokenizer = models.load_tokenizer(s.pretrained_path)
            max_length = s.sequence_length + 2 if s.original_truncation else None
            encode = lambda x: collators.tokenized(x, tokenizer, max_length)  # noqa: E731
            how = f"the tokenizer of {s.pretrained_path}, digits separated by spaces"
            if max_length:
                how += f", cut to L + 2 = {max_length} tokens (original_truncation)"
        else:
            encode = lambda x: collators.bos_ids(x, tf.BOS[alphabet])  # noqa: E731
            how = f"symbols as token ids after BOS = {tf.BOS[alphabet]}"
        splits = {"train": {**encode(split.x_train), "labels": split.y_train.float()},
                  "test": {**encode(split.x_test), "labels": split.y_test.float()}}
        first = splits["train"]
        ids = first["input_ids"][0]
        if "attention_mask" in first:
            ids = ids[first["attention_mask"][0].bool()]
        # what the model really reads, e.g. '0 1 1 0' -> [2, 3, 3, 2], so an encoding mistake shows in logs.log
        encoding = f"{how}; '{collators.digit_text(split.x_train[:1])[0]}' -> {ids.tolist()}"
        facts = {}
        if s.pretrained_path and s.original_truncation:
            # how many digits survive the cut, read back from the kept tokens of the first string
            read = sum(ch.isdigit() for ch in tokenizer.decode(ids.tolist(), skip_special_tokens=True))
            facts["digits_read"] = read
            if read < s.sequence_length:
                self.log.warning(f"warning: original_truncation keeps {s.sequence_length + 2} tokens: the model "
                                 f"reads only the first {read} of the {s.sequence_length} digits of each string")
        if split.facts.get("test_in_train"):
            self.log.warning(f"warning: {split.facts['test_in_train']} of the {split.facts['test_size']} test strings "
                             "are also training strings: test accuracy partly measures memorisation")
        return Data(train=splits["train"], splits=splits,
                    facts={**split.facts, **facts, "from_cache": cached, "encoding": encoding})

    @classmethod
    def memory_estimate(cls, s, eval_batch=None):
        parts = super().memory_estimate(s, eval_batch=min(s.eval_batch_size, max(s.train_set_size, s.test_set_size)))
        strings = s.train_set_size + s.test_set_size
        parts[f"token ids of the {strings:,} strings (train_set_size + test_set_size) of sequence_length "
              f"{s.sequence_length:,}"] = \
            strings * (s.sequence_length + 2) * 8
        return parts

    @staticmethod
    def _logits(model, batch):
        return model(batch["input_ids"], attention_mask=batch.get("attention_mask")).float()

    def training_loss(self, model, batch):
        return F.binary_cross_entropy_with_logits(self._logits(model, batch), batch["labels"])

    def evaluate_batch(self, model, batch):
        logits = self._logits(model, batch)
        loss = F.binary_cross_entropy_with_logits(logits, batch["labels"], reduction="sum")
        correct = ((logits >= 0).float() == batch["labels"]).sum()
        n = len(logits)
        return {"loss": (loss, n), "accuracy": (correct, n)}


def plot(folder, out_dir):
    """Train (dashed) and test (solid) accuracy against epochs, one panel per grid point: memorising
    shows as train -> 1 with test flat at 0.5."""
    import plot as plots

    runs = plots.load_runs(folder)
    if not runs:
        return []

    def title(label, members):
        facts = members[0]["summary"].get("data_facts", {})
        return f"{label}\n{facts.get('description', '')}" if facts.get("description") else label

    # balanced classes: guessing is right half the time
    return [plots.accuracy_curves(folder, runs, out_dir, title, cols=4, chance=lambda run: 0.5)]
