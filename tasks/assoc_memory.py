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
bound with the same H, d_h, d, drawn for comparison only.
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
    num_batch: int = setting(64, "batches per epoch: the training set holds batch_size * num_batch sequences",
                             low=1)
    # ---- the model
    model: str = setting("aot", "aot: attention only; transformer: one attention module and a GELU MLP "
                         "of width W per layer", choices=("aot", "transformer"))
    d: int = setting(10, "embedding (residual) dimension", low=1)
    d_h: int | None = setting(None, "head dimension (None: d, no compress/decompress maps)", low=1)
    H: int = setting(11, "parallel attention heads per layer ('para' in the original)", low=1)
    W: int = setting(0, "MLP width (model = 'transformer'; 0: no MLP)", low=0)
    nb_layers: int = setting(1, "layers", low=1)
    context_window: int | None = setting(None, "rows of the positional embedding (None: n, as the "
                                         "original); the model reads the n - 1 context tokens", low=1)
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
    eta_min: float = setting(0.0, "not used by this programme (its ramp ends at lr_end); must stay 0",
                             low=0.0)
    weight_decay: float = setting(0.0, "Adam L2 weight decay", low=0.0)
    max_grad_norm: float = setting(0.0, "gradient clipping norm; 0 disables clipping (the original's)",
                                   low=0.0)
    acc_window: int = setting(100, "training batches the last_batches_accuracy is averaged over", low=1)
    batch_size: int = setting(256, "training batch size", low=1)
    threads: int = setting(1, "torch CPU threads of the run (0: leave torch's default); these models are "
                           "so small that one thread is fastest and a second only contends", low=0)

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
        if self.positions < self.n_gram - 1:
            problems.append(f"context_window = {self.context_window} is shorter than the {self.n_gram - 1} "
                            "context tokens the model reads")
        if self.model == "aot" and self.W:
            problems.append(f"W = {self.W} is an MLP width but the AoT has no MLP; set model = 'transformer' "
                            "or W = 0")
        problems.extend(models.check(self.model_spec()))
        return problems

    def model_spec(self):
        """The transformer these settings ask for (the AoT: W = 0)."""
        return models.AttentionOnlySpec(N=self.N, d=self.d, d_h=self.d_h, H=self.H,
                                        W=self.W if self.model == "transformer" else 0,
                                        nb_layers=self.nb_layers, context_window=self.positions)


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


def sample_sequences(tables, count, generator=None, chunk_entries=1 << 22):
    """count sequences drawn from the tables by inverse CDF, position by position, vectorised over samples
    (in chunks of at most chunk_entries gathered table entries, to bound memory at large N)."""
    N = tables[0].shape[-1]
    cdfs = [t.reshape(-1, N).cumsum(dim=1) for t in tables]
    chunk = max(1, chunk_entries // N)
    out = []
    for start in range(0, count, chunk):
        m = min(chunk, count - start)
        seq = torch.empty(m, len(tables), dtype=torch.long)
        context = torch.zeros(m, dtype=torch.long)  # flat index of the tokens drawn so far
        for k, cdf in enumerate(cdfs):
            rows = cdf[context]
            u = torch.rand(m, 1, generator=generator, dtype=torch.float64) * rows[:, -1:]
            token = torch.searchsorted(rows, u, right=True).squeeze(1).clamp_(max=N - 1)
            seq[:, k] = token
            context = context * N + token
        out.append(seq)
    return torch.cat(out)


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
        if s.threads:
            torch.set_num_threads(s.threads)  # the first thing the loop asks of a task, before any tensor work
        generator = torch.Generator().manual_seed(s.seed if s.data_seed is None else s.data_seed)
        self.tables = power_unif_law(s.alphas, s.support, s.N, generator)
        self.cond = self.tables[-1].reshape(-1, s.N)  # law of the last token, one row per flat context
        self.radix = s.N ** torch.arange(s.n_gram - 2, -1, -1)
        train = sample_sequences(self.tables, s.batch_size * s.num_batch, generator)

        p_context = context_law(self.tables)
        support = p_context.nonzero().squeeze(1)
        digits = (support.unsqueeze(1) // self.radix) % s.N
        weight = p_context[support] * len(support)  # so that the loop's mean over the split is sum_c p(c)
        contexts = torch.cat([digits, self.cond[support].argmax(dim=1, keepdim=True)], dim=1)

        self.n_contexts = len(support)
        self.optimal = float((p_context * self.cond.max(dim=1).values).sum())
        self.bound = lower_bound(s.N, s.H, s.head_dim, s.d, self.n_contexts)
        seen = torch.unique((train[:, :-1] * self.radix).sum(1)).numel()
        facts = {"n_gram": s.n_gram, "contexts": self.n_contexts, "contexts_seen_in_train": seen,
                 "mean_conditional_entropy": round(float((p_context * entropy(self.cond)).sum()), 6),
                 "optimal_accuracy": round(self.optimal, 6), "lower_bound_accuracy": round(self.bound, 6),
                 "associations_bound": s.H * s.head_dim + s.d}
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
        self.log.info(f"model {s.model}: N {s.N}, d {s.d}, d_h {s.head_dim}, H {s.H}, W {s.W}, "
                      f"layers {s.nb_layers}, positions {s.positions}; {count:,} parameters "
                      f"(formula {spec.parameter_count():,})")
        return model

    def configure_optimizer(self, model, total_steps, steps_per_epoch=None):
        """optim's linear schedule from the start rate to the end rate (any pair, 0 included, rising or
        falling), reaching the end rate on the last step."""
        s = self.settings
        start, end = (s.lr, s.lr_end) if s.lr_schedule == "linear" else (s.lr * s.lr, s.lr * s.lr_end)
        # optim's linear decay reaches eta_min one step after the last (torch's and HF's convention); the
        # original's ramp reaches lr_end on the last step, so it is one step shorter
        return optim.build(model, s, total_steps - 1, lr=start, eta_min=end, lr_schedule="linear")

    # ---- loss and metrics
    def _forward(self, model, tokens):
        cond, ent, best, radix = self._tables(tokens.device)
        context = (tokens[:, :-1] * radix).sum(dim=1)
        return model(tokens[:, :-1]).float(), context, cond, ent, best

    def training_loss(self, model, batch):
        tokens = batch["tokens"]
        logits, context, cond, ent, _ = self._forward(model, tokens)
        if self.settings.loss == "kl":
            loss = F.kl_div(F.log_softmax(logits, dim=-1), cond[context], reduction="batchmean")
        else:
            loss = F.cross_entropy(logits, tokens[:, -1]) - ent[context].mean()
        self._record_accuracy((logits.detach().argmax(dim=-1) == tokens[:, -1]).float().mean())
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
        tokens = batch["tokens"]
        logits, context, cond, ent, best = self._forward(model, tokens)
        guess = logits.argmax(dim=-1)
        n = len(tokens)
        if "weight" not in batch:  # samples of the training set
            loss = F.cross_entropy(logits, tokens[:, -1], reduction="sum") - ent[context].sum()
            return {"loss": (loss, n), "accuracy": ((guess == tokens[:, -1]).sum(), n)}
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
                "associations_bound": s.H * s.head_dim + s.d, "head_dim": s.head_dim,
                "expected_parameters": s.model_spec().parameter_count()}


# ---------------------------------------------------------------- plots

AXES = ("H", "d_h", "d", "W")
# The original's published means (reference/assoc_memory.md), drawn where every run of a sweep has the
# fixed settings listed: (axis, fixed settings, {axis value: accuracy}).
_AOT = {"model": "aot", "nb_layers": 1}
ORIGINAL = [
    ("H", dict(N=50, d=10, d_h=10, **_AOT), {1: 0.130, 6: 0.324, 11: 0.506, 16: 0.685, 21: 0.861, 26: 0.963,
                                             31: 0.997}),                                       # exp 1
    ("d_h", dict(N=50, d=10, H=20, **_AOT), {1: 0.081, 10: 0.804}),                              # exp 2
    ("H", dict(N=70, d=13, d_h=13, **_AOT), {1: 0.085, 31: 0.999}),                              # exp 5
    ("H", dict(N=70, d=10, d_h=10, **_AOT), {1: 0.068, 31: 0.594}),
    ("W", dict(N=70, d=13, d_h=13, H=1, model="transformer", nb_layers=1), {0: 0.084, 780: 0.998}),
    ("W", dict(N=70, d=10, d_h=10, H=1, model="transformer", nb_layers=1), {0: 0.070, 600: 0.693}),
    ("H", dict(N=10, d=2, d_h=2, **_AOT), {1: 0.33, 21: 0.86}),                                  # exp 6
]
CURVES = (("last_batches_accuracy", "last 100 training batches", "-", "o"),
          ("contexts_accuracy", "contexts memorised (all N^2)", ":", "s"))


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
        key = tuple((n, config.get(n)) for n in others)
        groups.setdefault(key, {}).setdefault(config[axis], []).append(summary)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (key, by_x) in enumerate(sorted(groups.items(), key=lambda kv: repr(kv[0]))):
        colour = colours[i % len(colours)]
        xs = sorted(by_x)
        label = ", ".join(f"{n}={v}" for n, v in key)
        for metric, name, style, marker in CURVES:
            values = [[s["final"].get(metric, float("nan")) for s in by_x[x]] for x in xs]
            mean = [statistics.fmean(v) for v in values]
            std = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.plot(xs, mean, linestyle=style, marker=marker, color=colour, markersize=4,
                    label=f"{name}" + (f" ({label})" if label else "") + f", mean of {min(map(len, values))}+ seeds")
            ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], color=colour, alpha=0.12)
            ax.errorbar(xs, mean, yerr=std, fmt="none", ecolor=colour, capsize=2, alpha=0.6)
        bound = [statistics.fmean(s["lower_bound_accuracy"] for s in by_x[x]) for x in xs]
        ax.plot(xs, bound, linestyle="--", color=colour, alpha=0.8,
                label="paper's lower bound 1/N + (1-1/N)(H d_h + d)/N^2" + (f" ({label})" if label else ""))
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
