"""Programme: how much does chain of thought (CoT) cut the samples a transformer needs to learn k-sparse
parity over n bits? (reference/parity_cot.md; paper: Wen, Zhang, Lin, Zhang, ICLR 2025)

Data. A secret set S of k positions out of n, shared by training and validation and recorded in every run:
the original's (numpy RandomState(0), `choice(n, k, replace=False)` redrawn while it holds n - 1; this
reproduces the spec's table for every listed (n, k)), one drawn from `data_seed`, or one given in `secret`.
Inputs are n bits, least-significant bit first, of distinct integers; validation (n_valid = 2048) and
training inputs are disjoint. The vocabulary is {0, 1}; no BOS, separator or EOS. Sequences:

    without CoT: x_0 ... x_{n-1}, y                      y = XOR of the secret bits      (n + 1 tokens)
    with CoT:    x_0 ... x_{n-1}, c_1 ... c_k, y         c_j = XOR of x_{s_1} .. x_{s_{j-1}} (c_1 = 0)

Labels are -100 on the n input positions; every CoT token and y is trained with next-token cross-entropy.
Two training regimes: `n_train = None` draws fresh samples every step (Figures 1-3), `n_train = N` fixes a
set of N distinct inputs reused epoch after epoch (Figures 4, 5, 9). The fresh samples are distinct, as the
original's (`fresh_inputs = 'distinct'`, n <= 62): the integers of a keyed pseudo-random permutation of all
2^n (a Feistel network over a counter), validation inputs skipped, so no input is drawn twice until all
2^n - n_valid have been (then a new order); `'independent'` draws each input uniformly, repeats possible
(3.8% of 8 * 10^4 draws at n = 20; the stream of runs made before 2026-12-02).

Model: GPT-2 causal LM from scratch through the model layer (learned positions, tied embeddings, MLP
4 * n_embd, dropout). Loss and metrics read only the predictions of the labelled positions, and the model
is asked for those alone (CausalLM positions=...: on CPU its last block computes nothing else, which
halves a 1-layer model's work; the same logits). Dropout's masks come from the counter noise by default
(`dropout_noise = 'counter'`: decoders.counter_keep_mask, a function of the seed, the training step and the
element's place, so only the computed rows' masks are drawn, in parallel; `'torch'`: nn.Dropout's).
`model_dtype = 'bfloat16'` casts the whole model to bf16 as the original did (and, as there, no autocast runs
over it: `mixed_precision = 'auto'` means none for such a model, so layer norms and softmax compute in bf16
too); `mixed_precision = 'bf16'` is autocast with fp32 weights instead; fp32 is the default.
Optimiser: AdamW (0.9, 0.999, 1e-8), weight decay 0, linear decay from lr to 0 over the planned samples,
no warmup, clip 1.0, batch 512, seed 42.

Metrics of each evaluation (teacher-forced, argmax):
    valid_accuracy            exact match: a sample counts only when every labelled position is right
    valid_loss                mean cross-entropy over the labelled positions
    valid_cot<j>_acc, valid_answer_acc    per-position accuracy (position_accuracy = True)
    train_*                   the same on a subsample of the fixed training set (fixed-set regime), in eval
                              mode; step_loss (every programme's) is the training steps' own loss, dropout
                              on, averaged since the previous evaluation: the original's logged "loss"
                              (Figures 5, 10, 11 plot that one)
    entropy_l<l>_h<h>         normalised attention entropy of layer l, head h: for each query position
                              t >= 1 the entropy of its causal row over log(t + 1), minimum over t, mean
                              over the first entropy_samples validation samples
summary.json adds the secret set and the sample complexity: samples seen at the first evaluation whose
valid_accuracy reached `threshold` (sample_complexity; None and sample_complexity_text '>= <budget>'
when never).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import models
from settings import CommonSettings, setting, with_defaults
from tasks.base import Data, subsample
from tasks.base import Task as BaseTask

PERMUTATION_BITS = 20  # up to here the inputs are a permutation of all 2^n integers (the original's rule)
DISTINCT_BITS = 62  # the distinct stream permutes int64 integers: up to this many bits
FEISTEL_ROUNDS = 4  # rounds of the distinct stream's permutation (four make a pseudo-random one)
KEY_BITS = 62  # inputs of up to this many bits are keyed exactly by their integer value
EVAL_PIECE = 512  # sequences per forward pass in evaluations (see Task.labelled_logits)


@with_defaults(n_epochs=None, n_samples=10 ** 6, batch_size=512, lr=1e-4, lr_schedule="linear", eta_min=0.0,
               weight_decay=0.0, max_grad_norm=1.0, eval_every=None, eval_every_samples=2048,
               eval_batch_size=2048, seed=42)
class Settings(CommonSettings):
    task: str = setting("parity_cot", "the research programme (a module of tasks/)")
    # ---- the problem
    n_bits: int = setting(20, "n: input bits of each sample", low=2, high=4096)
    k: int = setting(6, "secret bits whose parity is the answer", low=1)
    cot: bool = setting(True, "chain of thought: k tokens of running parity before the answer")
    secret: list[int] | None = setting(None, "the secret positions (0-indexed, least-significant bit first); "
                                       "None: chosen by secret_rule")
    secret_rule: str = setting("original", "secret set when `secret` is None: original = the original code's "
                               "(numpy RandomState(0), redrawn while it holds n-1); seed = drawn from data_seed",
                               choices=("original", "seed"))
    data_seed: int | None = setting(None, "seed of the inputs (and of secret_rule = 'seed'); None: seed")
    # ---- the data regime
    n_train: int | None = setting(None, "training inputs of a fixed set reused epoch after epoch; None: fresh "
                                  "samples every step (a stream)", low=1)
    n_valid: int = setting(2048, "validation inputs (disjoint from training inputs)", low=1)
    fresh_inputs: str = setting("distinct", "stream (n_train = None): distinct = no input drawn twice until all "
                                "2^n - n_valid have been (a keyed permutation of the 2^n integers, as the "
                                "original's fresh data; n <= 62, above that independent); independent = each "
                                "input drawn uniformly, repeats possible (runs made before 2026-12-02)",
                                choices=("distinct", "independent"))
    train_eval_size: int = setting(2048, "fixed-set regime: training samples scored at each evaluation "
                                   "(a fixed subsample; 0: none)", low=0)
    threshold: float = setting(1.0, "validation exact match that counts as learned (sample complexity); "
                               "the paper uses 1.0, and 0.995 for Figure 3", low=0.0, high=1.0)
    position_accuracy: bool = setting(True, "record the accuracy of each CoT position and of the answer")
    # ---- the model (GPT-2 from scratch)
    n_layer: int = setting(1, "transformer layers", low=1)
    n_head: int = setting(1, "attention heads per layer", low=1)
    n_embd: int = setting(720, "width (the paper's 720; 64-128 at CPU scale)", low=1)
    dropout: float = setting(0.1, "GPT-2's residual, embedding and attention dropout", low=0.0, high=1.0)
    dropout_noise: str = setting("counter", "where dropout's masks come from in training on CPU: counter = a "
                                 "function of the seed, the step and the element's place (numpy's PCG64, drawn "
                                 "in parallel, only for the positions computed; resumes exactly; stacks); torch = "
                                 "nn.Dropout's, torch's global generator (the numbers of runs made before "
                                 "2026-12-02). On a GPU both are the model's own dropout",
                                 choices=("counter", "torch"))
    n_positions: int | None = setting(None, "rows of the learned position table (None: the sequence length). "
                                      "The original's 2048 adds rows no sequence reaches, and so changes the "
                                      "random draws of the initial weights: the same seed gives another initial "
                                      "model (from the same distribution)", low=1)
    model_dtype: str = setting("float32", "float32, or bfloat16: the whole model cast to bf16 (weights, "
                               "optimiser state and activations), as the original", choices=("float32", "bfloat16"))
    # ---- diagnostics
    attention_entropy: bool = setting(True, "log the normalised attention entropy per layer and head")
    entropy_samples: int = setting(256, "validation samples the attention entropy is averaged over", low=1)

    def training_source(self):
        return "stream" if self.n_train is None else "fixed"

    def gpu_autocast(self):
        """A model cast to bf16 trains with no autocast, as the original's did (autocast would compute its
        layer norms, softmax and losses in float32)."""
        return "no" if self.model_dtype == "bfloat16" else "bf16"

    @property
    def length(self):
        return self.n_bits + (self.k if self.cot else 0) + 1

    def notes(self):
        notes = super().notes()
        if self.secret is not None:
            notes += self.no_effect(("secret_rule",), f": secret = {self.secret!r} is given")
        if self.n_train is None:
            notes += self.no_effect(("train_eval_size",), " on a stream (n_train = None): every step draws fresh "
                                    "samples, so there is no training set to score")
        else:
            notes += self.no_effect(("fresh_inputs",), f": n_train = {self.n_train} fixes the training inputs")
        return notes

    def check(self):
        problems = super().check()
        if self.k > self.n_bits:
            problems.append(f"k = {self.k} secret bits cannot exceed n_bits = {self.n_bits}")
        if self.secret is not None:
            bad = [p for p in self.secret if not 0 <= p < self.n_bits]
            if bad:
                problems.append(f"secret = {self.secret}: positions {bad} are outside 0..{self.n_bits - 1}")
            if len(set(self.secret)) != len(self.secret):
                problems.append(f"secret = {self.secret} repeats a position")
            if len(self.secret) != self.k:
                problems.append(f"secret = {self.secret} has {len(self.secret)} positions but k = {self.k}")
        needed = self.n_valid + (self.n_train or 0)
        if self.n_bits < 63 and needed > 2 ** self.n_bits:
            asked = f"n_valid + n_train = {needed}" if self.n_train else f"n_valid = {needed}"
            problems.append(f"{asked} distinct inputs do not exist for n_bits = {self.n_bits} (2^{self.n_bits} = "
                            f"{2 ** self.n_bits}): lower n_valid (default 2048)"
                            + (" or n_train" if self.n_train else "") + ", or raise n_bits")
        elif self.n_train is None and self.n_bits < 63 and 2 * self.n_valid > 2 ** self.n_bits:
            problems.append(f"n_valid = {self.n_valid} leaves too few of the 2^{self.n_bits} inputs to draw "
                            "training samples from")
        if self.n_positions is not None and self.n_positions < self.length:
            problems.append(f"n_positions = {self.n_positions} is shorter than the sequence ({self.length} tokens)")
        if self.model_dtype == "bfloat16" and self.mixed_precision == "fp16":
            problems.append("model_dtype = 'bfloat16' cannot go with mixed_precision = 'fp16'")
        problems.extend(models.check(self.model_spec()))
        return problems

    def model_spec(self):
        return models.DecoderSpec(model="gpt2", vocab_size=2, max_positions=self.n_positions or self.length,
                                  n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                                  dropout=self.dropout, head="lm", tie_embeddings=True,
                                  dropout_noise=self.dropout_noise)

    def secret_set(self):
        """The sorted secret positions these settings name."""
        if self.secret is not None:
            return sorted(self.secret)
        if self.secret_rule == "original":
            return original_secret(self.n_bits, self.k)
        seed = self.seed if self.data_seed is None else self.data_seed
        return sorted(np.random.default_rng(seed).choice(self.n_bits, self.k, replace=False).tolist())


# ---------------------------------------------------------------- data

def original_secret(n, k):
    """The original code's secret set for (n, k): numpy's legacy generator seeded with 0, k of n without
    replacement, drawn again while the set holds the last position n - 1 (unless k == n). Sorted."""
    rng = np.random.RandomState(0)
    while True:
        secret = rng.choice(n, k, replace=False)
        if k == n or n - 1 not in secret:
            return sorted(int(s) for s in secret)


def to_bits(ints, n):
    """Integers -> [count, n] uint8 bits, least-significant bit first."""
    return ((ints.unsqueeze(1) >> torch.arange(n, device=ints.device)) & 1).to(torch.uint8)


def keys(bits):
    """One int64 per row of bits: the integer itself for n <= 62 bits, else a polynomial hash of its 62-bit
    words (equal rows have equal keys; distinct rows sharing a key are merely treated as equal)."""
    n = bits.shape[1]
    weights = torch.ones(KEY_BITS, dtype=torch.int64, device=bits.device) << torch.arange(KEY_BITS, device=bits.device)
    key = torch.zeros(len(bits), dtype=torch.int64, device=bits.device)
    for start in range(0, n, KEY_BITS):
        word = (bits[:, start:start + KEY_BITS].long() * weights[:min(KEY_BITS, n - start)]).sum(1)
        key = key * 1_000_003 + word if start else word  # int64 arithmetic wraps: a hash beyond 62 bits
    return key


def distinct_inputs(n, count, generator):
    """count distinct n-bit inputs in a random order: a permutation of all 2^n integers for n <= 20 (the
    original's rule), else uniform rows drawn until count distinct ones are found."""
    if n <= PERMUTATION_BITS:
        return to_bits(torch.randperm(2 ** n, generator=generator)[:count], n)
    rows = torch.empty(0, n, dtype=torch.uint8)
    while len(rows) < count:
        more = torch.randint(0, 2, (count - len(rows) + count // 16 + 64, n), generator=generator, dtype=torch.uint8)
        rows = torch.cat([rows, more])
        unique, inverse = torch.unique(keys(rows), return_inverse=True)
        first = torch.full((len(unique),), len(rows), dtype=torch.int64)
        first.scatter_reduce_(0, inverse, torch.arange(len(rows)), reduce="amin")
        rows = rows[first.sort().values]  # the first occurrence of each, in drawing order
    return rows[:count]


def sequences(bits, secret, cot):
    """Token ids [count, n + k + 1] (with CoT) or [count, n + 1] (uint8): the bits, the running parities
    before each secret position, the parity of the secret bits."""
    chosen = bits[:, secret].long()
    running = torch.cumsum(chosen, dim=1) % 2  # parity of the secret bits up to and including each
    answer = running[:, -1:]
    parts = [bits.long()]
    if cot:
        parts.append(torch.cat([torch.zeros_like(answer), running[:, :-1]], dim=1))
    parts.append(answer)
    return torch.cat(parts, dim=1).to(torch.uint8)


def labels_of(ids, n):
    """Next-token labels in Hugging Face's convention: the token ids, -100 on the n input positions."""
    labels = ids.long().clone()
    labels[:, :n] = -100
    return labels


def _round(right, key, mask):
    """A round function of the distinct stream's Feistel network: (right xor key), right and key below 2^31,
    through two multiply-xorshift steps whose products stay below 2^62 (no int64 overflow), cut to the
    half's width."""
    h = (right ^ key) * 0x2545F491
    h = h ^ (h >> 29)
    h = (h & 0x7FFFFFFF) * 0x6C8E9CF5
    h = h ^ (h >> 31)
    return (h >> 11) & mask


def feistel(x, keys, n):
    """A bijection of the n-bit integers (int64 tensor x): Feistel rounds, one per key (a tensor broadcasting
    with x, or an int), over a high part of n // 2 bits and a low part of the rest; each round maps
    (high, low) to (low, high xor round(low)), so the parts swap widths (an unbalanced Feistel network: odd n
    needs no cycle walking)."""
    high_bits, low_bits = n // 2, n - n // 2
    high, low = x >> low_bits, x & ((1 << low_bits) - 1)
    for key in keys:
        high, low = low, high ^ _round(low, key, (1 << high_bits) - 1)
        high_bits, low_bits = low_bits, high_bits
    return (high << low_bits) | low


def permuted(counter, keys, n):
    """The counter-th integer of a keyed pseudo-random order of the 2^n integers, pass after pass (pass
    counter >> n has its own keys)."""
    passes = counter >> n
    round_keys = [(key + passes * 0x9E3779B1) & 0x7FFFFFFF for key in keys]
    return feistel(counter & ((1 << n) - 1), round_keys, n)


class FreshSamples:
    """The stream's sampler: sample(count, generator) -> {"ids": sequences} drawn on the generator's device,
    none of whose inputs is a validation input. distinct (n <= 62): the integers of a keyed pseudo-random
    permutation of the 2^n (`permuted`, keys drawn from the generator at the first batch) in its order, so
    that no input repeats until all 2^n - n_valid have been drawn; its state (the count drawn and the keys)
    goes into checkpoints (dataloaders.Stream). Otherwise each input is drawn uniformly and redrawn while it
    is a validation input."""

    def __init__(self, n, secret, cot, valid_bits, distinct):
        self.n, self.secret, self.cot = n, secret, cot
        self.distinct = distinct and n <= DISTINCT_BITS
        self.valid_keys = keys(valid_bits).sort().values
        self.on_device = {}
        self.drawn, self.keys = 0, None

    def __call__(self, count, generator):
        bits = self._distinct(count, generator) if self.distinct else self._independent(count, generator)
        return {"ids": sequences(bits, self.secret, self.cot)}

    def state_dict(self):
        return {"drawn": self.drawn, "keys": self.keys}

    def load_state_dict(self, state):
        self.drawn, self.keys = state["drawn"], state["keys"]

    def _is_valid(self, key, device):
        if device not in self.on_device:
            self.on_device[device] = self.valid_keys.to(device)
        table = self.on_device[device]
        position = torch.searchsorted(table, key).clamp_(max=len(table) - 1)
        return table[position] == key

    def _distinct(self, count, generator):
        device = generator.device
        if self.keys is None:
            self.keys = torch.randint(0, 2 ** 31, (FEISTEL_ROUNDS,), generator=generator, device=device).tolist()
        parts, need = [], count
        while need:
            take = need + need // 8 + 64  # room for the validation inputs skipped
            ints = permuted(torch.arange(self.drawn, self.drawn + take, device=device), self.keys, self.n)
            kept = (~self._is_valid(ints, device)).nonzero().squeeze(1)[:need]
            parts.append(ints[kept])
            self.drawn += int(kept[-1]) + 1 if len(kept) == need else take
            need -= len(kept)
        return to_bits(torch.cat(parts), self.n)

    def _independent(self, count, generator):
        device = generator.device
        bits = torch.randint(0, 2, (count, self.n), generator=generator, device=device, dtype=torch.uint8)
        while True:
            hit = self._is_valid(keys(bits), device)
            if not bool(hit.any()):
                return bits
            bits[hit] = torch.randint(0, 2, (int(hit.sum()), self.n), generator=generator, device=device,
                                      dtype=torch.uint8)


# ---------------------------------------------------------------- metrics

def normalised_entropy(attention):
    """Per head, the spec's normalised attention entropy of one layer's attention [batch, heads, T, T]:
    for each query position t >= 1 the entropy of its row over log(t + 1) (1 for a uniform causal row,
    0 for a one-hot one), the minimum over t, the mean over the batch. Returns [heads] (float32)."""
    p = attention.float()[:, :, 1:]  # query positions t >= 1
    entropy = -torch.special.xlogy(p, p).sum(-1)  # [batch, heads, T - 1]
    norm = torch.log(torch.arange(2, p.shape[-1] + 1, dtype=torch.float32, device=p.device))
    return (entropy / norm).amin(dim=-1).mean(dim=0)


def exact_match(predicted, target):
    """Per sample, whether every labelled position is right ([batch, positions] -> [batch] bool)."""
    return (predicted == target).all(dim=1)


def sample_complexity(history, threshold=1.0, key="valid_accuracy"):
    """Samples seen at the first evaluation whose `key` reached threshold; None when none did."""
    for record in history:
        if record.get(key, -1.0) >= threshold:
            return record["samples"]
    return None


def position_names(k, cot):
    return [f"cot{j}" for j in range(1, k + 1)] * cot + ["answer"]


def fused_gelu(model):
    """GPT-2's tanh GELU (transformers' NewGELUActivation: ~8 element-wise ops written in Python) swapped
    for torch's fused nn.GELU(approximate='tanh'), the same function to float rounding. On CPU the Python
    version and its backward took ~30% of a training step of the 128-wide reference model (profiled)."""
    for module in model.modules():
        mlp_act = getattr(module, "act", None)
        if type(mlp_act).__name__ == "NewGELUActivation":
            module.act = torch.nn.GELU(approximate="tanh")
    return model


# ---------------------------------------------------------------- the task

class Task(BaseTask):
    name = "parity_cot"
    Settings = Settings
    report_columns = ("sample_complexity_text",)
    stackable = True
    stack_varies = ("data_seed",)

    def build_data(self):
        s = self.settings
        self.secret = s.secret_set()
        generator = torch.Generator().manual_seed(s.seed if s.data_seed is None else s.data_seed)
        inputs = distinct_inputs(s.n_bits, s.n_valid + (s.n_train or 0), generator)
        valid_bits, train_bits = inputs[:s.n_valid], inputs[s.n_valid:]
        valid = {"ids": sequences(valid_bits, self.secret, s.cot)}
        facts = {"secret": self.secret, "secret_rule": "given" if s.secret is not None else s.secret_rule,
                 "sequence_length": s.length, "labelled_positions": s.length - s.n_bits,
                 "valid_answer_balance": round(float(valid["ids"][:, -1].float().mean()), 4)}
        if s.n_train is None:
            sampler = FreshSamples(s.n_bits, self.secret, s.cot, valid_bits, s.fresh_inputs == "distinct")
            facts["train"] = self._stream_fact(sampler)
            return Data(train=sampler, splits={"valid": valid}, facts=facts)
        train = {"ids": sequences(train_bits, self.secret, s.cot)}
        overlap = int(torch.isin(keys(train_bits), keys(valid_bits)).sum())
        facts.update(train_inputs=len(train_bits), train_valid_overlap=overlap,
                     train_answer_balance=round(float(train["ids"][:, -1].float().mean()), 4))
        splits = {"valid": valid}
        if s.train_eval_size:
            splits["train"] = subsample(train, s.train_eval_size, generator)
        return Data(train=train, splits=splits, facts=facts)

    def _stream_fact(self, sampler):
        s = self.settings
        if not sampler.distinct:
            why = (f" (n_bits = {s.n_bits} > {DISTINCT_BITS}: a repeat has probability below draws^2 / "
                   f"2^{s.n_bits + 1})" if s.fresh_inputs == "distinct" else "")
            return (f"fresh samples every step, each input drawn uniformly (repeats possible){why}, none a "
                    "validation input")
        fact = ("fresh samples every step: distinct inputs in a keyed pseudo-random order of the 2^n, none a "
                "validation input")
        planned = s.n_samples or (s.n_steps or 0) * s.batch_size
        if planned > 2 ** s.n_bits - s.n_valid:
            fact += (f"; the budget of {planned:,} samples exceeds the {2 ** s.n_bits - s.n_valid:,} inputs there "
                     "are: after each pass over them, another order")
        return fact

    def build_model(self, data):
        s = self.settings
        model = fused_gelu(models.build(s.model_spec()))
        if s.model_dtype == "bfloat16":
            model = model.to(torch.bfloat16)
        total, _ = models.count_parameters(model)
        self.log.info(f"model gpt2 causal LM: {s.n_layer} layers x {s.n_head} heads, width {s.n_embd}, "
                      f"{s.model_spec().max_positions} positions, {s.model_dtype}; {total:,} parameters")
        return model

    def labelled_logits(self, model, ids):
        """The logits that predict the labelled positions n .. T-1 (those of positions n-1 .. T-2), and
        only those computed: the model skips the work that feeds no other position (decoders.CausalLM).
        Out of training, in pieces of EVAL_PIECE sequences (the same logits, bit for bit): an evaluation
        batch of 2048 sequences makes activations of up to 113 MB, which the allocator takes from the
        system and zero-fills afresh every time (width 128: ~15% of an evaluation's CPU time)."""
        rows = slice(self.settings.n_bits - 1, ids.shape[1] - 1)
        if model.training or len(ids) <= EVAL_PIECE:
            return model(ids, positions=rows)
        return torch.cat([model(ids[start:start + EVAL_PIECE], positions=rows)
                          for start in range(0, len(ids), EVAL_PIECE)])

    def training_loss(self, model, batch):
        """Mean next-token cross-entropy over the labelled positions (the CoT tokens and y): the terms of
        models.lm_loss(model(ids), labels_of(ids, n)), computed from the labelled positions' logits alone
        (value and gradient equal to float summation order; tests/test_parity_cot.py)."""
        ids = batch["ids"].long()
        logits = self.labelled_logits(model, ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, self.settings.n_bits:].reshape(-1))

    def evaluate_batch(self, model, batch):
        n = self.settings.n_bits
        ids = batch["ids"].long()
        logits = self.labelled_logits(model, ids)
        target = ids[:, n:]
        count = len(ids)
        predicted = logits.argmax(-1)
        out = {"loss": (F.cross_entropy(logits.reshape(-1, 2).float(), target.reshape(-1), reduction="sum"),
                        target.numel()),
               "accuracy": (exact_match(predicted, target).sum(), count)}
        if self.settings.position_accuracy:
            right = (predicted == target).sum(dim=0)
            for j, name in enumerate(position_names(self.settings.k, self.settings.cot)):
                out[f"{name}_acc"] = (right[j], count)
        return out

    def diagnostics(self, model, data):
        s = self.settings
        if not s.attention_entropy:
            return {}
        ids = data.splits["valid"]["ids"][:s.entropy_samples].long()
        _, attentions = model(ids, output_attentions=True)
        out = {}
        for layer, attention in enumerate(attentions):
            for head, value in enumerate(normalised_entropy(attention).tolist()):
                out[f"entropy_l{layer}_h{head}"] = value
        return out

    def extra_summary(self, data, history):
        s = self.settings
        reached = sample_complexity(history, s.threshold)
        budget = history[-1]["samples"]
        return {"secret": self.secret, "threshold": s.threshold, "sample_complexity": reached,
                "sample_complexity_text": str(reached) if reached is not None else f">= {budget}",
                "learned": reached is not None, "budget_samples": budget}


# ---------------------------------------------------------------- plots

def _shape(config):
    return f"{config.get('n_layer')}L{config.get('n_head')}H"


def plot(folder, out_dir):
    """Every plot that the folder's runs allow: sample complexity against k (with and without CoT),
    accuracy against samples per model shape, attention entropy beside accuracy, and the accuracy heat
    map over layers x heads (when the sweep varies both)."""
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import plot as plotting
    runs = [r for r in plotting.load_runs(folder) if r["metrics"]]
    if not runs:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = plotting.stem(folder)
    paths = [p for p in (_complexity_plot(runs, out_dir / f"{stem}_sample_complexity.png", plt),
                         _curves_plot(runs, out_dir / f"{stem}_accuracy_curves.png", plt),
                         _entropy_plot(runs, out_dir / f"{stem}_entropy.png", plt),
                         _heatmap_plot(runs, out_dir / f"{stem}_heatmap.png", plt)) if p]
    return paths


REGIME = ("fresh_inputs", "dropout_noise")


def _regime(config):
    """How a run drew its data and dropout masks where that is not the problem itself: the stream's inputs
    (distinct or independent; None for a fixed set) and the dropout noise. Runs of different regimes are kept
    apart in the plots (pooled, a sweep over fresh_inputs drew one line through both)."""
    return (config.get("fresh_inputs") if config.get("n_train") is None else None, config.get("dropout_noise"))


def _regime_text(regime, runs):
    """', fresh_inputs independent' for each part of the regime that differs between the runs; '' if none."""
    return "".join(f", {name} {regime[i]}" for i, name in enumerate(REGIME)
                   if regime[i] is not None and len({_regime(r["config"])[i] for r in runs}) > 1)


def _done(runs):
    return [r for r in runs if r["summary"].get("state") == "done"]


def _best_over_lr(by_lr):
    """The sample complexity of a point of Figure 1/2/3: per learning rate the geometric mean over its seeds
    (a lower bound, the largest of them, where a seed never learned), then the best rate, as the original's
    plotting scripts take min(...) over lr = 6e-5, 8e-5, 1e-4. A lower bound only where no rate learned with
    every seed."""
    learned, bounds = [], []
    for summaries in by_lr.values():
        values = [s["sample_complexity"] for s in summaries if s.get("sample_complexity") is not None]
        never = [s["budget_samples"] for s in summaries if s.get("sample_complexity") is None]
        if never:
            bounds.append(max(never + values))
        else:
            learned.append(math.exp(sum(math.log(v) for v in values) / len(values)))
    return min(learned) if learned else min(bounds)


def _complexity_plot(runs, path, plt):
    """Sample complexity against k, one line per (CoT, model shape); runs that never learn drawn at their
    budget as upward triangles (a lower bound); the line: the geometric mean over seeds, at the best learning
    rate where several were run (_best_over_lr)."""
    done = _done(runs)
    if len({r["config"]["k"] for r in done}) < 2:
        return None
    groups = {}
    # n and the threshold split the lines where a sweep varies them (one line pooled different problems)
    several = {name: len({r["config"].get(name, 1.0 if name == "threshold" else None) for r in done}) > 1
               for name in ("n_bits", "threshold")}
    for r in done:
        c = r["config"]
        key = (bool(c["cot"]), _shape(c), c.get("n_embd"), c.get("n_train"), c.get("n_bits"), c.get("threshold", 1.0),
               _regime(c))
        groups.setdefault(key, {}).setdefault(c["k"], {}).setdefault(c.get("lr"), []).append(r["summary"])
    several_lr = len({r["config"].get("lr") for r in done}) > 1
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (key, by_k) in enumerate(sorted(groups.items(), key=lambda kv: repr(kv[0]))):
        cot, shape, width, n_train, n_bits, threshold, regime = key
        colour = f"C{i % 10}"
        label = f"{'CoT' if cot else 'no CoT'}, {shape}, d={width}" + (f", {n_train} reused" if n_train else "") \
            + (f", n={n_bits}" if several["n_bits"] else "") + (f", to {threshold:g}" if several["threshold"] else "") \
            + _regime_text(regime, done)
        xs = sorted(by_k)
        line_x, line_y = [], []
        for x in xs:
            summaries = [s for group in by_k[x].values() for s in group]
            learned = [s["sample_complexity"] for s in summaries if s.get("sample_complexity") is not None]
            never = [s["budget_samples"] for s in summaries if s.get("sample_complexity") is None]
            ax.scatter([x] * len(learned), learned, color=colour, marker="o", s=18, alpha=0.6)
            ax.scatter([x] * len(never), never, color=colour, marker="^", s=40, facecolors="none")
            line_x.append(x)
            line_y.append(_best_over_lr(by_k[x]))
        ax.plot(line_x, line_y, color=colour, label=label, linestyle="-" if cot else "--")
    ax.scatter([], [], marker="^", facecolors="none", color="grey", label="never reached: >= budget")
    ax.set_yscale("log")
    ax.set_xlabel("k (secret bits)")
    ax.set_ylabel(_complexity_label(done))
    ax.set_xticks(sorted({r["config"]["k"] for r in done}))
    n_bits = sorted({r["config"]["n_bits"] for r in done})
    ax.set_title(f"sparse parity, n={','.join(map(str, n_bits))}: sample complexity vs k "
                 "(geometric mean over seeds" + (", best lr)" if several_lr else ")"), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _complexity_label(done):
    """The sample-complexity axis names the runs' threshold (Figure 3's is 0.995, not exact match 1.0)."""
    thresholds = sorted({r["config"].get("threshold", 1.0) for r in done})
    return "samples to exact match " + " or ".join(f"{t:g}" for t in thresholds)


def _curves_plot(runs, path, plt):
    """Validation exact match (solid; training subsample dashed) against samples, one panel per model
    shape and CoT arm, runs of other settings overlaid."""
    panels = {}
    for r in runs:
        c = r["config"]
        panels.setdefault((_shape(c), bool(c["cot"])), []).append(r)
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for ax, ((shape, cot), members) in zip(axes.flat, sorted(panels.items())):
        for i, r in enumerate(members):
            c, m = r["config"], r["metrics"]
            x = [rec["samples"] for rec in m]
            label = f"k={c['k']}, seed {c['seed']}" + (f", lr {c['lr']:g}" if c.get("lr") else "") \
                + _regime_text(_regime(c), runs)
            ax.plot(x, [rec["valid_accuracy"] for rec in m], color=f"C{i % 10}", label=label)
            if "train_accuracy" in m[-1]:
                ax.plot(x, [rec["train_accuracy"] for rec in m], color=f"C{i % 10}", ls="--", alpha=0.5)
        ax.set_title(f"{shape}, {'CoT' if cot else 'no CoT'}", fontsize=9)
        ax.set_xlabel("training samples")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4), useMathText=True)  # 1e5 labels collide
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes[0][0].set_ylabel("exact match (solid valid, dashed train)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _entropy_plot(runs, path, plt, most=4):
    """Accuracy on top and the normalised attention entropy of every head below, on one shared samples
    axis (Figure 1b), for at most `most` runs: one per (k, CoT, shape), the largest k first."""
    first = {}  # one run (the lowest seed) per (k, CoT, shape), largest k first, CoT before no CoT
    for r in sorted(runs, key=lambda r: r["config"]["seed"]):
        c = r["config"]
        if any(key.startswith("entropy_") for key in r["metrics"][-1]):
            first.setdefault((-c["k"], not c["cot"], _shape(c), c.get("n_train") or 0,
                              tuple(part or "" for part in _regime(c))), r)
    chosen = [first[key] for key in sorted(first)][:most]
    if not chosen:
        return None
    fig, axes = plt.subplots(2, len(chosen), figsize=(4.2 * len(chosen), 5.5), squeeze=False, sharex="col")
    for col, r in enumerate(chosen):
        c, m = r["config"], r["metrics"]
        x = [rec["samples"] for rec in m]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(x, [rec["valid_accuracy"] for rec in m], color="k", label="valid exact match")
        if "valid_answer_acc" in m[-1]:
            top.plot(x, [rec["valid_answer_acc"] for rec in m], color="grey", ls=":", label="answer accuracy")
        top.set_ylim(-0.03, 1.03)
        top.set_title(f"{_shape(c)} d={c['n_embd']}, n={c['n_bits']} k={c['k']}, "
                      f"{'CoT' if c['cot'] else 'no CoT'}, seed {c['seed']}" + _regime_text(_regime(c), runs),
                      fontsize=8)
        top.grid(alpha=0.3)
        top.legend(fontsize=6)
        heads = sorted(k for k in m[-1] if k.startswith("entropy_"))
        for i, key in enumerate(heads):
            bottom.plot(x, [rec.get(key, float("nan")) for rec in m], color=f"C{i % 10}",
                        label=key.replace("entropy_", ""))
        reached = r["summary"].get("sample_complexity")
        for ax in (top, bottom):
            if reached is not None:
                ax.axvline(reached, color="r", alpha=0.4, ls="--")
        bottom.set_xlabel("training samples")
        bottom.ticklabel_format(axis="x", style="sci", scilimits=(0, 4), useMathText=True)
        bottom.set_ylim(-0.03, 1.03)
        bottom.grid(alpha=0.3)
        bottom.legend(fontsize=6, ncol=2)
    axes[0][0].set_ylabel("accuracy")
    axes[1][0].set_ylabel("normalised attention entropy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _best_accuracy_over_lr(by_lr):
    """A cell of Figure 9: the mean final accuracy over seeds at the best learning rate (the original's fig9.py
    keeps the max over lr = 6e-5, 8e-5, 1e-4)."""
    return max(sum(values) / len(values) for values in by_lr.values())


def _heatmap_plot(runs, path, plt):
    """Figure 9: final validation exact match (mean over seeds, at the best learning rate where several were
    run, as the original's fig9.py takes the max over lr) over layers x heads, one map per other setting
    (CoT arm, training set size)."""
    done = _done(runs)
    if len({r["config"]["n_layer"] for r in done}) < 2 or len({r["config"]["n_head"] for r in done}) < 2:
        return None
    maps = {}
    for r in done:
        c = r["config"]
        key = (bool(c["cot"]), c.get("n_train"), c["k"], _regime(c))
        maps.setdefault(key, {}).setdefault((c["n_layer"], c["n_head"]), {}).setdefault(c.get("lr"), []).append(
            r["summary"]["final"].get("valid_accuracy", float("nan")))
    fig, axes = plt.subplots(1, len(maps), figsize=(4.5 * len(maps), 4), squeeze=False)
    for ax, (key, cells) in zip(axes[0], sorted(maps.items(), key=lambda kv: repr(kv[0]))):
        layers = sorted({l for l, _ in cells})
        heads = sorted({h for _, h in cells})
        grid = np.full((len(layers), len(heads)), np.nan)
        for (l, h), by_lr in cells.items():
            grid[layers.index(l), heads.index(h)] = _best_accuracy_over_lr(by_lr)
        image = ax.imshow(grid, origin="lower", vmin=0.5 if not key[0] else 0.0, vmax=1.0, cmap="viridis")
        for i in range(len(layers)):
            for j in range(len(heads)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="k" if grid[i, j] > 0.75 else "w")
        ax.set_xticks(range(len(heads)), heads)
        ax.set_yticks(range(len(layers)), layers)
        ax.set_xlabel("heads")
        ax.set_ylabel("layers")
        cot, n_train, k, regime = key
        ax.set_title(f"k={k}, {'CoT' if cot else 'no CoT'}, "
                     + (f"{n_train} reused" if n_train else "fresh samples") + _regime_text(regime, done), fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    several_lr = len({r["config"].get("lr") for r in done}) > 1
    fig.suptitle("final validation exact match" + (" (mean over seeds at the best lr)" if several_lr else ""),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
