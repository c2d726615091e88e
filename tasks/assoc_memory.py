"""Programme: how many associations (context -> next token) can an attention-only transformer memorise,
as a function of its heads H, head dimension d_h and width d? (reference/assoc_memory.md)

Data: an n-gram law pi (one conditional table per position, geometric weights alpha^rank truncated to
nb_tokens[i] ranks, permuted per context). The experiments use alphas = [1, 1, 1], nb_tokens = [N, N, 1]:
(t0, t1) uniform over N^2 contexts and t2 = f(t0, t1) for a random lookup table f, i.e. N^2 associations.
A fixed training set of batch_size * num_batch sequences is sampled once (vectorised inverse CDF), so one
epoch is num_batch steps.

Model: the AoT (H parallel single-head causal attentions per layer, summed into the residual, no MLP, no
norm) or the Transformer variant (plus a GELU MLP of width W). Only the prediction of the last token
counts. Loss: cross-entropy minus the true conditional entropy (floor 0), or KL(pi || model).
Optimiser: Adam with a per-step linear ramp of the learning rate from lr to lr_end (rates, not factors).

Metrics of each evaluation:
    last_batches_accuracy        argmax accuracy over the last `acc_window` training batches (the paper's)
    train_accuracy / train_loss  the final model on the fixed training set (loss = CE - entropy)
    contexts_accuracy            fraction of the contexts of positive probability whose argmax is a most
                                 likely next token (exact memorisation; N^2 contexts in the experiments)
    contexts_expected_accuracy   sum_c p(c) pi(argmax model(c) | c): the accuracy on fresh samples
    contexts_loss                sum_c p(c) KL(pi(.|c) || model(.|c))
summary.json adds memorised_contexts, optimal_accuracy (best achievable under pi) and the paper's lower
bound 1/N + (1 - 1/N) min(1, (H d_h + d) / #contexts) (#contexts = N^2 in the experiments). The bound is
the paper's for one attention layer; for deeper models and the MLP variant it is the one-layer AoT's
bound with the same H, d_h, d, drawn for comparison only; the low-rank baseline, without attention, has none.
"""

import torch
import torch.nn.functional as F

import models
import optim
from optim import OPTIMIZERS
from settings import CommonSettings, setting, with_defaults
from tasks.base import Data
from tasks.base import Task as BaseTask

MAX_TABLE_ENTRIES = 5 * 10 ** 7  # N ** n entries of the last conditional table (float64: 400 MB)
ORIGINAL_SAMPLER_CONTEXTS = 10 ** 6  # sampler = 'original': one Python-level randperm per context


@with_defaults(n_epochs=64, eval_every=16, eval_batch_size=16384)
class Settings(CommonSettings):
    task: str = setting("assoc_memory", "the research programme (a module of tasks/)")
    # ---- the distribution
    N: int = setting(50, "vocabulary size: number of tokens", low=2)
    alphas: list[float] = setting([1.0, 1.0, 1.0], "geometric weight alpha^rank of each position's "
                                  "conditional; its length is the n of the n-gram")
    nb_tokens: list[int] | None = setting(None, "support size of each position's conditional "
                                          "(None: [N, ..., N, 1], a deterministic last token)")
    data_seed: int | None = setting(None, "seed of the tables pi and of the training set (None: seed); "
                                    "fix it to vary only the model init across seeds, as the original did")
    sampler: str = setting("vectorised", "how the tables and the training set are drawn from data_seed. "
                           "vectorised: one rand-argsort per table and an inverse-CDF sampler (fast); original: "
                           "the original code's draws (a randperm per context, torch.multinomial per position), "
                           "so data_seed = 2222 gives its notebook's table and training set exactly",
                           choices=("vectorised", "original"))
    num_batch: int = setting(64, "batches per epoch: the training set holds batch_size * num_batch sequences",
                             low=1)
    # ---- the model
    model: str = setting("aot", "aot: attention only; transformer: one attention module and a GELU MLP "
                         "of width W per layer; low_rank: the original's baseline without attention, one "
                         "learned row of d per context of n - 1 tokens and an unembedding d -> N (N^(n-1) d + "
                         "d N parameters; H, d_h, W, nb_layers unused)",
                         choices=("aot", "transformer", "low_rank"))
    d: int = setting(10, "embedding (residual) dimension", low=1)
    d_h: int | None = setting(None, "head dimension (None: d, no compress/decompress maps)", low=1)
    H: int = setting(11, "parallel attention heads per layer ('para' in the original)", low=1)
    W: int = setting(0, "MLP width (model = 'transformer'; 0: no MLP)", low=0)
    nb_layers: int = setting(1, "layers", low=1)
    context_window: int | None = setting(None, "the original's context_window: sequence length and rows of "
                                         "the positional embedding (None: n). Above n, the sequences continue "
                                         "the chain (each token after the n-th drawn from the last table given "
                                         "the n - 1 before it), the model reads context_window - 1 tokens and is "
                                         "scored after every position with n - 1 tokens before it (loss and "
                                         "accuracies averaged over them, as the original); n - 1: one row "
                                         "fewer, the paper's parameter count", low=1)
    init: str = setting("normal", "initialisation of the AoT / transformer. normal: token and positional "
                        "embeddings N(0, 1), q/k/v/output maps U(+-1/sqrt(d_h)); original: the original "
                        "code's draws: token embedding U(+-1/sqrt(d)) (its nn.Linear(d, N).weight), positions "
                        "U(+-1/sqrt(d_h)), q/k/v Xavier-uniform U(+-sqrt(6/(4 d_h))) (nn.MultiheadAttention's "
                        "packed map), output map U(+-1/sqrt(d_h)); embeddings about 5x smaller than normal's",
                        choices=("normal", "original"))
    # ---- training
    loss: str = setting("ce", "ce: cross-entropy of the sampled last token minus the true conditional "
                        "entropy (exact memorisation); kl: KL(pi || model) of the last token (approximate "
                        "memorisation)", choices=("ce", "kl"))
    lr: float = setting(1e-2, "learning rate at the first step of the linear ramp", low=0.0)
    lr_end: float = setting(5e-4, "learning rate at the last step of the linear ramp", low=0.0)
    optim: str = setting("adam", "optimiser (optim.py): adam (coupled L2 weight decay, the original's), adamw, "
                         "sgd, muon (Muon on the nn.Linear weights: unembedding, compress maps, MLP; Adam on "
                         "the embeddings and the attention maps)", choices=OPTIMIZERS)
    lr_schedule: str = setting("linear", "linear: the rate goes from lr to lr_end; original: lr and lr_end "
                               "are the original code's factors lr and lr_low, so the rate goes from lr*lr "
                               "to lr*lr_end", choices=("linear", "original"))
    lr_ramp: str = setting("step", "step: the rate moves every optimiser step and reaches the end rate on "
                           "the last one; epoch: the original's (torch LinearLR(total_iters = n_epochs) stepped "
                           "once per epoch): constant within epoch e at start + (end - start) e / n_epochs, so "
                           "the last epoch runs at 1/n_epochs of the way above the end rate",
                           choices=("step", "epoch"))
    eta_min: float = setting(0.0, "not used by this programme (its ramp ends at lr_end); must stay 0",
                             low=0.0)
    weight_decay: float = setting(0.0, "Adam L2 weight decay", low=0.0)
    max_grad_norm: float = setting(0.0, "gradient clipping norm; 0 disables clipping (the original's)",
                                   low=0.0)
    acc_window: int = setting(100, "training batches the last_batches_accuracy is averaged over", low=1)
    batch_size: int = setting(256, "training batch size", low=1)

    @property
    def n_gram(self):
        return len(self.alphas)

    @property
    def head_dim(self):
        return self.d if self.d_h is None else self.d_h

    @property
    def support(self):
        return list(self.nb_tokens) if self.nb_tokens is not None else [self.N] * (self.n_gram - 1) + [1]

    @property
    def positions(self):
        return self.n_gram if self.context_window is None else self.context_window

    @property
    def seq_len(self):
        """Tokens per training sequence (the last one only a label)."""
        return max(self.n_gram, self.positions)

    def notes(self):
        # the step schedules' settings exist for the other programmes: here they do nothing (said once each)
        notes = [n for n in super().notes() if not n.startswith("lr_milestones")]
        notes += self.no_effect(("lr_step_size", "lr_gamma", "lr_milestones"), " in assoc_memory: its learning rate "
                                "ramps from lr to lr_end (lr_schedule linear or original), with no step schedule")
        # the model's sizes that this model kind does not have (not refused, so that a sweep can vary model)
        names, why = {"low_rank": (("H", "d_h", "W", "nb_layers"), "it has no attention"),
                      "aot": (("W",), "it has no MLP")}.get(self.model, ((), ""))
        return notes + self.no_effect(names, f" with model = {self.model!r}: {why}")

    def check(self):
        problems = [p for p in super().check() if not p.startswith("eta_min")]
        if self.eta_min:
            problems.append(f"eta_min = {self.eta_min!r} is not used by assoc_memory: its learning rate "
                            "ramps linearly from lr to lr_end; set lr_end instead")
        if self.n_gram < 2:
            problems.append(f"alphas = {self.alphas!r}: give at least two positions (an n-gram with n >= 2)")
        if any(a < 0 for a in self.alphas):
            problems.append(f"alphas = {self.alphas!r}: weights alpha^rank need alpha >= 0")
        if self.nb_tokens is not None:
            if len(self.nb_tokens) != self.n_gram:
                problems.append(f"nb_tokens = {self.nb_tokens!r} has {len(self.nb_tokens)} entries but alphas "
                                f"has {self.n_gram}: give one support size per position")
            if any(not 1 <= k <= self.N for k in self.nb_tokens):
                problems.append(f"nb_tokens = {self.nb_tokens!r}: each support size must be in 1..N = {self.N}")
        if self.n_gram >= 2 and self.N ** self.n_gram > MAX_TABLE_ENTRIES:
            problems.append(f"N ** n = {self.N} ** {self.n_gram} table entries is too many "
                            f"(at most {MAX_TABLE_ENTRIES:.0e}); lower N or the n-gram length")
        if self.sampler == "original" and self.N ** (self.n_gram - 1) > ORIGINAL_SAMPLER_CONTEXTS:
            problems.append(f"sampler = 'original' draws one randperm per context in Python: N ** (n - 1) = "
                            f"{self.N ** (self.n_gram - 1)} contexts is too many (at most "
                            f"{ORIGINAL_SAMPLER_CONTEXTS:.0e}); use sampler = 'vectorised'")
        if self.positions < self.n_gram - 1:
            problems.append(f"context_window = {self.context_window} is shorter than the {self.n_gram - 1} "
                            "context tokens the model reads")
        if self.lr_ramp == "epoch" and self.n_epochs is None:
            problems.append("lr_ramp = 'epoch' moves the rate once per epoch: give the budget in n_epochs "
                            "(not n_steps or n_samples), or use lr_ramp = 'step'")
        problems.extend(models.check(self.model_spec()))
        return problems

    def model_spec(self):
        """The transformer these settings ask for (the AoT: W = 0), or the low-rank baseline."""
        if self.model == "low_rank":
            return models.LowRankSpec(N=self.N, d=self.d, n_gram=self.n_gram, init=self.init)
        return models.AttentionOnlySpec(N=self.N, d=self.d, d_h=self.d_h, H=self.H,
                                        W=self.W if self.model == "transformer" else 0,
                                        nb_layers=self.nb_layers, context_window=self.positions,
                                        init=self.init)


# ---------------------------------------------------------------- the n-gram law

def power_unif_law(alphas, nb_tokens, N, generator=None):
    """Conditional tables pi[k] of shape (N,) * k + (N,): pi[k][t_0..t_{k-1}] is the law of token k.

    Each row holds weights alpha^rank for rank < nb_tokens[k] (0 beyond), normalised, then placed by a
    random permutation drawn independently for every context (float64, rows sum to one).
    """
    tables = []
    for k, (alpha, support) in enumerate(zip(alphas, nb_tokens)):
        ranks = torch.arange(N, dtype=torch.float64)
        weights = torch.where(ranks < support, torch.tensor(float(alpha), dtype=torch.float64) ** ranks, 0.0)
        weights = weights / weights.sum()
        contexts = N ** k
        perm = torch.rand(contexts, N, generator=generator).argsort(dim=1)
        table = torch.zeros(contexts, N, dtype=torch.float64).scatter_(1, perm, weights.expand(contexts, N))
        tables.append(table.view((N,) * k + (N,)))
    return tables


def sample_sequences(tables, count, generator=None, chunk_entries=1 << 22, length=None):
    """count sequences drawn from the tables by inverse CDF, position by position, vectorised over samples
    (in chunks of at most chunk_entries gathered table entries, to bound memory at large N). length (None:
    n) > n continues each sequence as a Markov chain: every token after the n-th is drawn from the last
    table given the n - 1 tokens before it."""
    N, n = tables[0].shape[-1], len(tables)
    length = n if length is None else length
    cdfs = [t.reshape(-1, N).cumsum(dim=1) for t in tables]
    chunk = max(1, chunk_entries // N)
    out = []
    for start in range(0, count, chunk):
        m = min(chunk, count - start)
        seq = torch.empty(m, length, dtype=torch.long)
        context = torch.zeros(m, dtype=torch.long)  # flat index of the tokens drawn so far (the last n - 1)
        for k in range(length):
            rows = cdfs[min(k, n - 1)][context]
            u = torch.rand(m, 1, generator=generator, dtype=torch.float64) * rows[:, -1:]
            token = torch.searchsorted(rows, u, right=True).squeeze(1).clamp_(max=N - 1)
            seq[:, k] = token
            context = context * N + token
            if k >= n - 2:
                context = context % N ** (n - 1)
        out.append(seq)
    return torch.cat(out)


def original_law(alphas, nb_tokens, N, generator):
    """The original code's tables draw for draw (its power_unif_law after torch.manual_seed(seed) equals
    this with torch.Generator().manual_seed(seed)): float32 weights alpha^rank truncated to nb_tokens[k]
    and normalised; row c of table k is those weights indexed by a fresh randperm(N), rows drawn position by
    position, contexts in row-major order. Returned as float64 (the float32 values)."""
    tables = []
    for k, (alpha, support) in enumerate(zip(alphas, nb_tokens)):
        weights = torch.tensor([float(alpha) ** r for r in range(N)], dtype=torch.float32)
        weights[support:] = 0
        weights = weights / weights.sum()
        rows = torch.stack([weights[torch.randperm(N, generator=generator)] for _ in range(N ** k)])
        tables.append(rows.view((N,) * k + (N,)))
    return [t.double() for t in tables]


def original_sequences(tables, count, generator, length=None):
    """The original's training set draw for draw (its generate_data before the DataLoader): the first token
    of all count sequences by one torch.multinomial with replacement, then each later position by one
    multinomial over the rows of the float32 table its context selects; after the n-th token the last
    table given the n - 1 tokens before (length, None: n)."""
    n = len(tables)
    length = n if length is None else length
    tables = [t.float() for t in tables]
    cols = [torch.multinomial(tables[0], count, replacement=True, generator=generator)]
    for k in range(1, length):
        table = tables[min(k, n - 1)]
        context = tuple(cols[-(n - 1):]) if k >= n - 1 else tuple(cols)
        cols.append(torch.multinomial(table[context], 1, generator=generator).squeeze(1))
    return torch.stack(cols, dim=1)


def entropy(rows):
    """Shannon entropy (nats) of each row of a table of distributions."""
    return -torch.special.xlogy(rows, rows).sum(dim=-1)


def context_law(tables):
    """p(t_0, ..., t_{n-2}) of the contexts of the last token, flattened to (N ** (n-1),)."""
    joint = tables[0]
    for table in tables[1:-1]:
        joint = joint.unsqueeze(-1) * table
    return joint.reshape(-1)


def lower_bound(N, H, d_h, d, contexts):
    """The paper's accuracy bound: H*d_h + d associations memorised exactly, the others right by chance
    (1/N); with uniform contexts and a deterministic table, 1/N + (1 - 1/N)(H d_h + d)/N^2."""
    return 1 / N + (1 - 1 / N) * min(1.0, (H * d_h + d) / contexts)


def epoch_rate(step, steps_per_epoch, n_epochs, start, end):
    """The original's rate at optimiser step `step` (0-based): torch's LinearLR(start_factor, end_factor,
    total_iters = n_epochs) stepped at the end of each epoch, constant within an epoch."""
    return start + (end - start) * min(step // steps_per_epoch, n_epochs) / n_epochs


# ---------------------------------------------------------------- the task

class Task(BaseTask):
    name = "assoc_memory"
    Settings = Settings
    stackable = True
    stack_varies = ("data_seed", "lr_end")

    def __init__(self, settings, log):
        super().__init__(settings, log)
        self._on_device = {}
        self._acc = None  # ring buffer of per-batch training accuracies (a tensor: no sync per step)
        self._steps = 0

    # ---- data
    def build_data(self):
        s = self.settings
        generator = torch.Generator().manual_seed(s.seed if s.data_seed is None else s.data_seed)
        if s.sampler == "original":
            self.tables = original_law(s.alphas, s.support, s.N, generator)
            train = original_sequences(self.tables, s.batch_size * s.num_batch, generator, length=s.seq_len)
        else:
            self.tables = power_unif_law(s.alphas, s.support, s.N, generator)
            train = sample_sequences(self.tables, s.batch_size * s.num_batch, generator, length=s.seq_len)
        self.cond = self.tables[-1].reshape(-1, s.N)  # law of the last token, one row per flat context
        self.radix = s.N ** torch.arange(s.n_gram - 2, -1, -1)

        p_context = context_law(self.tables)
        support = p_context.nonzero().squeeze(1)
        digits = (support.unsqueeze(1) // self.radix) % s.N
        weight = p_context[support] * len(support)  # so that the loop's mean over the split is sum_c p(c)
        contexts = torch.cat([digits, self.cond[support].argmax(dim=1, keepdim=True)], dim=1)

        self.n_contexts = len(support)
        self.optimal = min(1.0, float((p_context * self.cond.max(dim=1).values).sum()))  # (a sum of floats)
        # the paper's bound is an attention layer's: none for the low-rank baseline, which has no heads
        attention = s.model != "low_rank"
        self.bound = lower_bound(s.N, s.H, s.head_dim, s.d, self.n_contexts) if attention else None
        self.associations = s.H * s.head_dim + s.d if attention else None
        seen = torch.unique((train.unfold(1, s.n_gram - 1, 1)[:, :-1] * self.radix).sum(-1)).numel()
        facts = {"n_gram": s.n_gram, "sequence_length": s.seq_len, "contexts": self.n_contexts, "contexts_seen_in_train": seen,
                 "mean_conditional_entropy": round(float((p_context * entropy(self.cond)).sum()), 6),
                 "optimal_accuracy": round(self.optimal, 6),
                 "lower_bound_accuracy": None if self.bound is None else round(self.bound, 6),
                 "associations_bound": self.associations}
        train = {"tokens": train}
        return Data(train=train, splits={"train": train, "contexts": {"tokens": contexts, "weight": weight.float()}},
                    facts=facts)

    def _tables(self, device):
        """The last token's table, its entropies and best probabilities on `device` (moved once)."""
        if device not in self._on_device:
            cond = self.cond.float()
            self._on_device[device] = (cond.to(device), entropy(self.cond).float().to(device),
                                       cond.max(dim=1).values.to(device), self.radix.to(device))
        return self._on_device[device]

    # ---- model
    def build_model(self, data):
        s = self.settings
        spec = s.model_spec()
        model = models.build(spec)
        count = sum(p.numel() for p in model.parameters())
        shape = (f"d {s.d} (one row per context of {s.n_gram - 1} tokens)" if s.model == "low_rank" else
                 f"d {s.d}, d_h {s.head_dim}, H {s.H}, W {s.W}, layers {s.nb_layers}, positions {s.positions}")
        self.log.info(f"model {s.model}: N {s.N}, {shape}, init {s.init}; {count:,} parameters "
                      f"(formula {spec.parameter_count():,})")
        return model

    def configure_optimizer(self, model, total_steps, steps_per_epoch=None):
        """optim's linear schedule from the start rate to the end rate (any pair, 0 included, rising or
        falling), reaching the end rate on the last step; or (lr_ramp = 'epoch') the original's ramp,
        moved once per epoch."""
        s = self.settings
        start, end = (s.lr, s.lr_end) if s.lr_schedule == "linear" else (s.lr * s.lr, s.lr * s.lr_end)
        # optim's linear decay reaches eta_min one step after the last (torch's and HF's convention); the
        # original's ramp reaches lr_end on the last step, so it is one step shorter
        optimizer, scheduler = optim.build(model, s, total_steps - 1, lr=start, eta_min=end, lr_schedule="linear")
        if s.lr_ramp == "epoch":
            per_epoch = steps_per_epoch or s.num_batch
            scheduler = optim.RateLR(optimizer, lambda step: epoch_rate(step, per_epoch, s.n_epochs, start, end))
        return optimizer, scheduler

    # ---- loss and metrics
    def _forward(self, model, tokens):
        """(logits, targets, flat contexts, tables...) of every scored prediction: the last token of an
        n-token sequence, or in a longer one each token with n - 1 tokens before it (flattened)."""
        cond, ent, best, radix = self._tables(tokens.device)
        n = self.settings.n_gram
        if tokens.shape[1] == n:
            context = (tokens[:, :-1] * radix).sum(dim=1)
            return model(tokens[:, :-1]).float(), tokens[:, -1], context, cond, ent, best
        logits = model(tokens[:, :-1], first=n - 2).float()  # after positions n-2 .. L-2: (B, L-n+1, N)
        context = (tokens.unfold(1, n - 1, 1)[:, :-1] * radix).sum(-1)  # the n - 1 tokens before each target
        return logits.flatten(0, 1), tokens[:, n - 1:].flatten(), context.flatten(), cond, ent, best

    def training_loss(self, model, batch):
        logits, target, context, cond, ent, _ = self._forward(model, batch["tokens"])
        if self.settings.loss == "kl":
            loss = F.kl_div(F.log_softmax(logits, dim=-1), cond[context], reduction="batchmean")
        else:
            loss = F.cross_entropy(logits, target) - ent[context].mean()
        self._record_accuracy((logits.detach().argmax(dim=-1) == target).float().mean())
        return loss

    def _record_accuracy(self, accuracy):
        if self._acc is None or self._acc.device != accuracy.device:
            self._acc = torch.zeros(self.settings.acc_window, device=accuracy.device)
        slot = self._steps % len(self._acc)
        # a new tensor, not a write into the old one: under a stack's vmap the window of a first step is made
        # unbatched and the accuracy is batched, which an in-place write cannot take
        self._acc = torch.cat((self._acc[:slot], accuracy.reshape(1), self._acc[slot + 1:]))
        self._steps += 1

    def evaluate_batch(self, model, batch):
        logits, target, context, cond, ent, best = self._forward(model, batch["tokens"])
        guess = logits.argmax(dim=-1)
        n = len(target)
        if "weight" not in batch:  # samples of the training set (every scored position)
            loss = F.cross_entropy(logits, target, reduction="sum") - ent[context].sum()
            return {"loss": (loss, n), "accuracy": ((guess == target).sum(), n)}
        # every context once, weighted by p(context) * #contexts: the mean over the split is sum_c p(c) ...
        weight, rows = batch["weight"], cond[context]
        kl = (torch.special.xlogy(rows, rows) - rows * F.log_softmax(logits, dim=-1)).sum(dim=-1)
        p_guess = rows.gather(1, guess.unsqueeze(1)).squeeze(1)
        return {"loss": ((weight * kl).sum(), n), "accuracy": ((p_guess >= best[context] * (1 - 1e-6)).sum(), n),
                "expected_accuracy": ((weight * p_guess).sum(), n)}

    def diagnostics(self, model, data):
        n = min(self._steps, self.settings.acc_window)
        return {"last_batches_accuracy": float(self._acc[:n].mean()) if n else 0.0}

    # the window of training accuracies travels in checkpoints, so a resumed run reports what an
    # uninterrupted one does
    def state_dict(self):
        return {"acc": self._acc, "steps": self._steps}

    def load_state_dict(self, state):
        self._acc, self._steps = state["acc"], state["steps"]

    def extra_summary(self, data, history):
        s = self.settings
        final = history[-1]
        return {"memorised_contexts": round(final.get("contexts_accuracy", 0.0) * self.n_contexts),
                "contexts": self.n_contexts, "optimal_accuracy": self.optimal, "lower_bound_accuracy": self.bound,
                "associations_bound": self.associations, "head_dim": s.head_dim,
                "expected_parameters": s.model_spec().parameter_count()}


# ---------------------------------------------------------------- plots

# The original's CSV files (Scaling laws/Data_exp_*.csv: mean last-100-batch accuracy of 5 models), the data
# its scripts EXP_1_and_4.py, EXP_2.py and EXP_3.py fit; fitted here with the same forms as ours.
PAPER_H = (1, 6, 11, 16, 21, 26, 31)
PAPER_EXP1 = {  # d = d_h -> accuracy at PAPER_H (N = 50)
    3: (0.0586, 0.0652, 0.0758, 0.0856, 0.0879, 0.0950, 0.0973),
    4: (0.0678, 0.0904, 0.1143, 0.1257, 0.1463, 0.1596, 0.1737),
    5: (0.0738, 0.1193, 0.1582, 0.1922, 0.2248, 0.2572, 0.2936),
    6: (0.0856, 0.1536, 0.2103, 0.2659, 0.3138, 0.3753, 0.4232),
    7: (0.1005, 0.1887, 0.2634, 0.3443, 0.4313, 0.5125, 0.5913),
    8: (0.1121, 0.2311, 0.3348, 0.4450, 0.5596, 0.6628, 0.7833),
    9: (0.1217, 0.2758, 0.4133, 0.5523, 0.6960, 0.8337, 0.9384),
    10: (0.1298, 0.3243, 0.5063, 0.6852, 0.8608, 0.9634, 0.9974),
    11: (0.1401, 0.3710, 0.5866, 0.8020, 0.9618, 0.9986, 0.9998),
    12: (0.1471, 0.4359, 0.6792, 0.9174, 0.9966, 0.9999, 0.9999),
    13: (0.1626, 0.4820, 0.7745, 0.9882, 0.9998, 1.0000, 0.9999),
}
PAPER_EXP2 = dict(zip(range(1, 11), (0.0815, 0.1096, 0.1554, 0.2094, 0.2879, 0.3567, 0.4534, 0.5457, 0.6391,
                                     0.8044)))  # d_h -> accuracy (N = 50, d = 10, H = 20)
PAPER_EXP3 = dict(zip(range(5, 16), (0.2639, 0.3621, 0.4600, 0.5782, 0.6972, 0.8087, 0.7769, 0.7890, 0.7855,
                                     0.8118, 0.8136)))  # d -> accuracy (N = 50, d_h = 10, H = 20)

AXES = ("H", "d_h", "d", "W")
# The original's published means (reference/assoc_memory.md), drawn where every run of a sweep has the
# fixed settings listed: (axis, fixed settings, {axis value: accuracy}).
_AOT = {"model": "aot", "nb_layers": 1}
ORIGINAL = [
    *(("H", dict(N=50, d=d, d_h=d, **_AOT), dict(zip(PAPER_H, means))) for d, means in PAPER_EXP1.items()),  # 1
    ("d_h", dict(N=50, d=10, H=20, **_AOT), PAPER_EXP2),                                         # exp 2
    ("d", dict(N=50, d_h=10, H=20, **_AOT), PAPER_EXP3),                                         # exp 3
    ("H", dict(N=70, d=13, d_h=13, **_AOT), {1: 0.085, 31: 0.999}),                              # exp 5
    ("H", dict(N=70, d=10, d_h=10, **_AOT), {1: 0.068, 31: 0.594}),
    ("W", dict(N=70, d=13, d_h=13, H=1, model="transformer", nb_layers=1), {0: 0.084, 780: 0.998}),
    ("W", dict(N=70, d=10, d_h=10, H=1, model="transformer", nb_layers=1), {0: 0.070, 600: 0.693}),
    ("H", dict(N=10, d=2, d_h=2, **_AOT), {1: 0.33, 21: 0.86}),                                  # exp 6
]
CURVES = (("last_batches_accuracy", "last 100 training batches", "-", "o"),
          ("contexts_accuracy", "contexts memorised (all N^2)", ":", "s"))


def _group_key(config, names):
    """The settings `names` of a run as a key to group runs by (a list value, such as alphas, as a tuple)."""
    return tuple((n, tuple(v) if isinstance(v, list) else v) for n, v in ((n, config.get(n)) for n in names))


def _key_label(key):
    return ", ".join(f"{n}={list(v) if isinstance(v, tuple) else v}" for n, v in key)


def _runs(folder):
    """(config with d_h resolved, summary) of every finished run under folder."""
    import report
    from results import RunDir
    out = []
    for path in report.run_folders(folder):
        run = RunDir(path)
        config, summary = run.config(), run.summary()
        if config and summary and run.status().get("state") == "done":
            config = dict(config, d_h=config.get("d_h") or config.get("d"))
            out.append((config, summary))
    return out


def plot(folder, out_dir):
    """Accuracy against the varied one of H / d_h / d / W (mean over seeds, with min-max spread and +-1
    std), one curve per value of the other varied settings, with the paper's lower bound dashed."""
    import statistics
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import report
    runs = _runs(folder)
    if not runs:
        return []
    varied = [n for n in report.varied_names(folder) if n != "seed"]
    axis = next((n for n in reversed(varied) if n in AXES), None)
    if axis is None:  # a single run or seeds only: the axis that differs, else H
        axis = next((n for n in AXES if len({c[n] for c, _ in runs}) > 1), "H")
    others = [n for n in varied if n != axis]

    groups = {}
    for config, summary in runs:
        key = _group_key(config, others)
        groups.setdefault(key, {}).setdefault(config[axis], []).append(summary)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour_of = {}
    for i, (key, by_x) in enumerate(sorted(groups.items(), key=lambda kv: repr(kv[0]))):
        colour = colours[i % len(colours)]
        xs = sorted(by_x)
        label = _key_label(key)
        colour_of[label] = colour
        for metric, name, style, marker in CURVES:
            values = [[s["final"].get(metric, float("nan")) for s in by_x[x]] for x in xs]
            mean = [statistics.fmean(v) for v in values]
            std = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.plot(xs, mean, linestyle=style, marker=marker, color=colour, markersize=4,
                    label=f"{name}" + (f" ({label})" if label else "") + f", mean of {min(map(len, values))}+ seeds")
            ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], color=colour, alpha=0.12)
            ax.errorbar(xs, mean, yerr=std, fmt="none", ecolor=colour, capsize=2, alpha=0.6)
        if all(s.get("lower_bound_accuracy") is not None for x in xs for s in by_x[x]):  # (low_rank: none)
            bound = [statistics.fmean(s["lower_bound_accuracy"] for s in by_x[x]) for x in xs]
            ax.plot(xs, bound, linestyle="--", color=colour, alpha=0.8,
                    label="paper's lower bound 1/N + (1-1/N)(H d_h + d)/N^2" + (f" ({label})" if label else ""))
    _draw_fits(ax, folder, colour_of)
    first = runs[0][0]
    for ref_axis, fixed_values, reference in ORIGINAL:
        if ref_axis == axis and all(config.get(n) == v for config, _ in runs for n, v in fixed_values.items()):
            xs = sorted(reference)
            ax.plot(xs, [reference[x] for x in xs], "kx", markersize=7, label="original code (its CSV files)")
    fixed = ", ".join(f"{n}={first.get(n)}" for n in ("N", "d", "d_h", "H", "W", "nb_layers", "model")
                      if n != axis and n not in others)
    ax.set_xlabel({"H": "heads H", "d_h": "head dimension d_h", "d": "embedding dimension d",
                   "W": "MLP width W"}[axis])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"assoc_memory: accuracy vs {axis} ({fixed})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(out_dir) / f"assoc_memory_accuracy_vs_{axis}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _draw_fits(ax, folder, colour_of):
    """The fitted scaling law of each curve (dash-dot, its colour) and the paper's fit of the original's
    data where it ran that experiment (thin black dotted), coefficients in the legend."""
    import numpy as np
    axis, curves, _ = scaling_fits(folder)
    drawn = set()
    for c in curves:
        grid = list(np.linspace(c["xs"][0], c["xs"][-1], 200))
        colour = colour_of.get(c["label"], "C0")
        ax.plot(grid, fit_curve(c["kind"], c["coefficients"], grid), linestyle="-.", color=colour, linewidth=1,
                label="fit: " + describe_fit(c["kind"], c["coefficients"]).split(" (")[0]
                + (f" ({c['label']})" if c["label"] else ""))
        if c["paper"] and repr(c["paper"]) not in drawn:
            drawn.add(repr(c["paper"]))
            ax.plot(grid, fit_curve(c["kind"], c["paper"], grid), linestyle=":", color="black", linewidth=1,
                    label="paper's fit: " + describe_fit(c["kind"], c["paper"]).split(" (")[0])


# ---------------------------------------------------------------- the paper's scaling-law fits

SATURATION = 0.95  # the original fits the slope in H up to the first point above 0.95, that point included


def _line(xs, ys):
    """Least-squares (slope, intercept) of ys against xs."""
    import numpy as np
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(slope), float(intercept)


def fit_in_H(H, acc):
    """Linear law in H before saturation (exp 1 and 4): points up to the first accuracy above SATURATION,
    that one included, as the original's EXP_1_and_4.py. (slope, intercept, number of points used, whether a
    point went above SATURATION: if none did, every point is used)."""
    order = sorted(range(len(H)), key=H.__getitem__)
    H, acc = [H[i] for i in order], [acc[i] for i in order]
    above = next((i + 1 for i, a in enumerate(acc) if a > SATURATION), None)
    n = max(above or len(acc), 2)
    return (*_line(H[:n], acc[:n]), n, above is not None)


def fit_in_d_h(d_h, acc):
    """Quadratic law in d_h (exp 2): acc = a d_h^2 + b by least squares, the original's form. (a, b)."""
    return _line([x * x for x in d_h], acc)


def fit_piecewise_in_d(d, acc):
    """Two lines meeting at a break point (exp 3), the break the data point that minimises the summed squared
    error of a line through the points up to it and one through the points from it (each side at least two
    points; the break point belongs to both, as in the original's EXP_3.py, which breaks at d = d_h).
    (break d, (slope, intercept) before, (slope, intercept) after)."""
    order = sorted(range(len(d)), key=d.__getitem__)
    d, acc = [d[i] for i in order], [acc[i] for i in order]
    best = None
    for k in range(1, len(d) - 1):
        fits = [_line(d[:k + 1], acc[:k + 1]), _line(d[k:], acc[k:])]
        sse = sum((a - (fits[0] if i <= k else fits[1])[0] * x - (fits[0] if i <= k else fits[1])[1]) ** 2
                  for i, (x, a) in enumerate(zip(d, acc)))
        if best is None or sse < best[0]:
            best = (sse, d[k], fits[0], fits[1])
    return best[1:]


def fit_cubic_in_d(d, slopes):
    """Exp 4: the per-head slope against d = d_h as a d^3 + b (the original's cubic regression). (a, b)."""
    return _line([x ** 3 for x in d], slopes)


def paper_fit(axis, fixed):
    """The fit of the original's own data for a curve of accuracy against `axis` with these fixed settings
    (N, d, d_h, H, model, nb_layers), or None where the original ran no such experiment."""
    if fixed.get("N") != 50 or fixed.get("model", "aot") != "aot" or fixed.get("nb_layers", 1) != 1:
        return None
    if axis == "H" and fixed.get("d") == fixed.get("d_h") and fixed.get("d") in PAPER_EXP1:
        return ("linear", fit_in_H(list(PAPER_H), list(PAPER_EXP1[fixed["d"]])))
    if axis == "d_h" and fixed.get("d") == 10 and fixed.get("H") == 20:
        return ("quadratic", fit_in_d_h(list(PAPER_EXP2), list(PAPER_EXP2.values())))
    if axis == "d" and fixed.get("d_h") == 10 and fixed.get("H") == 20:
        return ("piecewise", fit_piecewise_in_d(list(PAPER_EXP3), list(PAPER_EXP3.values())))
    return None


def paper_cubic():
    """The original's exp-4 fit: the slope in H of each d of its exp-1 data, cubic in d."""
    ds = sorted(PAPER_EXP1)
    return fit_cubic_in_d(ds, [fit_in_H(list(PAPER_H), list(PAPER_EXP1[d]))[0] for d in ds])


FIT_METRIC = "last_batches_accuracy"  # the paper's accuracy, the one its laws are fitted to


def _fit(kind, xs, ys):
    if kind == "linear":
        return fit_in_H(xs, ys)
    if kind == "quadratic":
        return fit_in_d_h(xs, ys)
    return fit_piecewise_in_d(xs, ys)


def fit_curve(kind, coefficients, xs):
    """The fitted law at xs (the linear law capped at 1, as the original draws it)."""
    if kind == "linear":
        a, b = coefficients[:2]
        return [min(1.0, a * x + b) for x in xs]
    if kind == "quadratic":
        a, b = coefficients
        return [a * x * x + b for x in xs]
    brk, (a1, b1), (a2, b2) = coefficients
    return [(a1 * x + b1) if x <= brk else (a2 * x + b2) for x in xs]


def _plus(b, digits=4):
    return f"{'-' if b < 0 else '+'} {abs(b):.{digits}f}"


def describe_fit(kind, coefficients):
    if kind == "linear":
        a, b, n, saturated = coefficients
        return f"acc = {a:.4f} H {_plus(b)} (" + (f"first {n} points, up to the first above {SATURATION})" if saturated
                                                 else f"all {n} points: none above {SATURATION})")
    if kind == "quadratic":
        a, b = coefficients
        return f"acc = {a:.5f} d_h^2 {_plus(b)}"
    brk, (a1, b1), (a2, b2) = coefficients
    return f"acc = {a1:.4f} d {_plus(b1)} for d <= {brk}, {a2:.4f} d {_plus(b2)} after (break by least squares)"


def scaling_fits(folder):
    """The paper's scaling-law fits of a sweep's mean FIT_METRIC over seeds: for each curve (one per value
    of the other varied settings) against H a line before saturation (exp 1), against d_h a quadratic
    (exp 2), against d with d_h fixed two lines with a break (exp 3); where the curves against H differ in
    d = d_h, their slopes against d cubic (exp 4). Each with the original's fit of its own data where it ran
    that experiment. Returns (axis, curves, cubic) with curves a list of dicts (label, fixed, xs, means,
    kind, coefficients, paper) and cubic None or (ds, slopes, (a, b), paper's (a, b))."""
    import statistics

    import report
    runs = _runs(folder)
    if not runs:
        return None, [], None
    varied = [n for n in report.varied_names(folder) if n != "seed"]
    axis = next((n for n in reversed(varied) if n in AXES), None)
    if axis is None:
        axis = next((n for n in AXES if len({c[n] for c, _ in runs}) > 1), None)
    if axis not in ("H", "d_h", "d"):
        return axis, [], None
    others = [n for n in varied if n != axis]
    groups = {}
    for config, summary in runs:
        value = summary.get("final", {}).get(FIT_METRIC)
        if isinstance(value, (int, float)):
            key = _group_key(config, others)
            group = groups.setdefault(key, {"fixed": config, "by_x": {}, "d_h": set()})
            group["by_x"].setdefault(config[axis], []).append(value)
            group["d_h"].add(config["d_h"])
    kind = {"H": "linear", "d_h": "quadratic", "d": "piecewise"}[axis]
    curves = []
    for key, group in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        xs = sorted(group["by_x"])
        if len(xs) < (4 if kind == "piecewise" else 2):
            continue
        means = [statistics.fmean(group["by_x"][x]) for x in xs]
        fixed = {n: group["fixed"].get(n) for n in ("N", "d", "d_h", "H", "model", "nb_layers")}
        # against d with d_h = d (d_h None) the head dimension moves too: not the original's exp 3
        paper = paper_fit(axis, fixed) if axis != "d" or len(group["d_h"]) == 1 else None
        curves.append({"label": _key_label(key), "fixed": fixed, "xs": xs, "means": means,
                       "kind": kind, "coefficients": _fit(kind, xs, means), "paper": paper and paper[1]})
    cubic = None
    same_dims = [c for c in curves if c["fixed"]["d"] == c["fixed"]["d_h"]]
    if axis == "H" and len({c["fixed"]["d"] for c in same_dims}) >= 2 and len(same_dims) == len(curves):
        by_d = {}
        for c in same_dims:
            by_d.setdefault(c["fixed"]["d"], []).append(c["coefficients"][0])
        ds = sorted(by_d)
        slopes = [statistics.fmean(by_d[d]) for d in ds]
        cubic = (ds, slopes, fit_cubic_in_d(ds, slopes), paper_cubic())
    return axis, curves, cubic


def report_notes(folder):
    """Lines report.py prints below a sweep's table: the scaling-law fits beside the paper's."""
    axis, curves, cubic = scaling_fits(folder)
    if not curves:
        return []
    lines = ["", f"scaling-law fits of the mean {FIT_METRIC} over seeds against {axis} (the paper's: the same fit "
             "of the original's CSV data, where it ran the experiment"
             + (f", at H = {', '.join(map(str, PAPER_H))}" if axis == "H" else "") + "):"]
    for c in curves:
        lines.append(f"  {c['label'] or 'all runs'}: ours   {describe_fit(c['kind'], c['coefficients'])}")
        lines.append(f"  {'':{len(c['label'] or 'all runs')}}  paper  "
                     + (describe_fit(c["kind"], c["paper"]) if c["paper"] else "(no such experiment in the original)"))
    if cubic:
        ds, slopes, (a, b), (pa, pb) = cubic
        lines.append(f"  slope in H against d = d_h (exp 4), {', '.join(f'd={d}: {s:.4f}' for d, s in zip(ds, slopes))}")
        lines.append(f"    ours   slope = {a:.3e} d^3 {_plus(b)}")
        lines.append(f"    paper  slope = {pa:.3e} d^3 {_plus(pb)}")
    return lines
