"""The associative-memory programme's transformers, one of the model kinds that models.py builds from a
spec: ``AttentionOnlySpec`` -> ``check(spec)`` and ``build(spec)`` (reference/assoc_memory.md).

The AoT (W = 0): H parallel single-head causal attentions per layer summed into the residual, no MLP,
no norm; and the Transformer variant (W > 0): the same plus a GELU MLP of width W per layer.
"""
import dataclasses
import math

import torch
from torch import nn


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttentionOnlySpec:
    """A ``MemoryTransformer`` as a task asks for it; the fields are named as assoc_memory's settings.

    N: vocabulary size. d: embedding (residual) dimension. H: parallel attention heads per layer.
    d_h: head dimension (None: d, and no compress/decompress maps). W: MLP width (0: the AoT, attention
    only; > 0: the Transformer variant). nb_layers: layers. context_window: rows of the learned
    positional embedding (at least the number of tokens the model reads). init: 'normal' (token and
    positional embeddings N(0, 1)) or 'original' (the original code's: see ``MemoryTransformer``).
    """

    N: int
    d: int
    H: int
    d_h: int | None = None
    W: int = 0
    nb_layers: int = 1
    context_window: int = 3
    init: str = "normal"

    @property
    def head_dim(self):
        return self.d if self.d_h is None else self.d_h

    def parameter_count(self):
        """Parameters of build(self), by formula (logged beside the measured count)."""
        d, d_h, N = self.d, self.head_dim, self.N
        count = N * d + self.context_window * d_h + self.nb_layers * 4 * self.H * d_h * d_h + d * N
        if d != d_h:
            count += 2 * d * d_h
        if self.W:
            count += self.nb_layers * (2 * d * self.W + self.W)
        return count


INITS = ("normal", "original")


def check(spec) -> list[str]:
    """What is wrong with spec, one sentence per problem naming the field; empty if it builds."""
    if isinstance(spec, LowRankSpec):
        return check_low_rank(spec)
    problems = []
    for name, low in (("N", 1), ("d", 1), ("H", 1), ("d_h", 1), ("W", 0), ("nb_layers", 1), ("context_window", 1)):
        value = getattr(spec, name)
        if name == "d_h" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.append(f"{name} = {value!r} must be an integer >= {low}" + (" or None (d)" if name == "d_h" else ""))
    if spec.init not in INITS:
        problems.append(f"init = {spec.init!r} must be one of {', '.join(INITS)}")
    return problems


def build(spec) -> nn.Module:
    """The model spec describes (``models.build`` checks the spec first); seed the global RNG before."""
    if isinstance(spec, LowRankSpec):
        return LowRank(spec.N, spec.d, n_gram=spec.n_gram, init=spec.init)
    return MemoryTransformer(spec.N, spec.d, spec.head_dim, spec.H, W=spec.W, nb_layers=spec.nb_layers,
                             context_window=spec.context_window, init=spec.init)


class ParallelHeads(nn.Module):
    """H single-head causal attention modules of dimension d_h (no bias) applied to the same input, their
    outputs summed. Each map of the H heads is one (d_h, H, d_h) tensor (head h's W_q is q[:, h], in x out)
    and the output maps one (H, d_h, d_h) tensor, so the H heads run as one batched computation.

    The scores are a broadcast product rather than scaled_dot_product_attention: with the 2-3 positions
    of an n-gram, SDPA's CPU kernels cost 2.5x as much (forward + backward at B = 256, H = 11, d_h = 10:
    2.9 against 1.1 ms on one core, measured).
    """

    def __init__(self, d_h, H):
        super().__init__()
        self.d_h, self.H = d_h, H
        self.scale = 1 / math.sqrt(d_h)
        bound = 1 / math.sqrt(d_h)  # each head's maps initialised as nn.Linear(d_h, d_h) would be
        self.q, self.k, self.v = (nn.Parameter(torch.empty(d_h, H, d_h).uniform_(-bound, bound)) for _ in range(3))
        self.out = nn.Parameter(torch.empty(H, d_h, d_h).uniform_(-bound, bound))

    def forward(self, a, last_only=False, first=0):
        """a: (B, T, d_h) -> (B, T - first, d_h): the outputs at positions first..T-1 (last_only: the last
        position only)."""
        B, T, d_h = a.shape
        queries = a[:, -1:] if last_only else a[:, first:]
        Tq = queries.shape[1]
        # every product as one 2-D matmul (what torch folds a 3-D @ 2-D product into anyway): under a stack's
        # vmap a (B, 1, d_h) @ (d_h, H d_h) product otherwise became B outer products, 7x slower
        q = (queries.reshape(-1, d_h) @ self.q.view(d_h, -1)).view(B, Tq, 1, self.H, d_h)
        k = (a.reshape(-1, d_h) @ self.k.view(d_h, -1)).view(B, 1, T, self.H, d_h)
        v = (a.reshape(-1, d_h) @ self.v.view(d_h, -1)).view(B, 1, T, self.H, d_h)
        scores = (q * k).sum(-1) * self.scale                          # (B, Tq, T, H)
        if Tq > 1:
            causal = torch.ones(Tq, T, dtype=torch.bool, device=a.device).tril(T - Tq)
            scores = scores.masked_fill(~causal.unsqueeze(-1), float("-inf"))
        heads = (scores.softmax(dim=2).unsqueeze(-1) * v).sum(2)        # (B, Tq, H, d_h)
        return (heads.reshape(B * Tq, -1) @ self.out.view(-1, d_h)).view(B, Tq, d_h)  # summed over the heads


class MemoryTransformer(nn.Module):
    """The AoT (W = 0) and the Transformer variant (W > 0) of the original, reading n - 1 context tokens
    and returning the logits of the next token.

    Token embedding N x d; a learned positional embedding context_window x d_h added to the attention
    input only; per layer H parallel heads summed into the residual, then (W > 0) a GELU MLP of width W;
    when d != d_h one compress d -> d_h and one decompress d_h -> d map shared by every head and layer;
    no norm; an untied unembedding d -> N. The last layer computes the positions read out only: the last
    (forward(tokens)) or every one from `first` on (forward(tokens, first), longer sequences).

    init = 'normal': token and positional embeddings N(0, 1), each head's q, k, v and output maps
    U(+-1/sqrt(d_h)) (nn.Linear(d_h, d_h)'s). init = 'original': the original code's draws, about 5x
    smaller embeddings: its token map is nn.Linear(d, N).weight, U(+-1/sqrt(d)); its positions
    nn.Linear(d_h, context_window).weight, U(+-1/sqrt(d_h)); its heads nn.MultiheadAttention, whose packed
    [3 d_h, d_h] q/k/v map is Xavier-uniform, U(+-sqrt(6 / (4 d_h))), and whose output map is an
    nn.Linear(d_h, d_h). The unembedding, the compress maps and the MLP are nn.Linear's in both.
    """

    def __init__(self, N, d, d_h, H, W=0, nb_layers=1, context_window=3, init="normal"):
        super().__init__()
        self.embed = nn.Embedding(N, d)
        self.pos = nn.Parameter(torch.randn(context_window, d_h))
        self.compress = nn.Linear(d, d_h, bias=False) if d != d_h else None
        self.decompress = nn.Linear(d_h, d, bias=False) if d != d_h else None
        self.attn = nn.ModuleList(ParallelHeads(d_h, H) for _ in range(nb_layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(d, W), nn.GELU(), nn.Linear(W, d, bias=False))
                                 for _ in range(nb_layers)) if W else None
        self.unembed = nn.Linear(d, N, bias=False)
        if init == "original":
            self._original_init()
        elif init != "normal":
            raise ValueError(f"init = {init!r} must be one of {', '.join(INITS)}")

    @torch.no_grad()
    def _original_init(self):
        # drawn after the 'normal' modules, so 'normal' draws exactly what it always drew
        d, d_h = self.embed.weight.shape[1], self.pos.shape[1]
        self.embed.weight.uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d))
        self.pos.uniform_(-1 / math.sqrt(d_h), 1 / math.sqrt(d_h))
        xavier = math.sqrt(6 / (3 * d_h + d_h))  # fan_in d_h, fan_out 3 d_h of the packed q/k/v map
        for attn in self.attn:
            for weight in (attn.q, attn.k, attn.v):
                weight.uniform_(-xavier, xavier)

    def forward(self, tokens, first=None):
        """Logits (B, N) of the token after the last one; first = i: logits (B, T - i, N) after each
        position i..T-1 (a loss at every position of a longer sequence)."""
        x = self.embed(tokens)
        pos = self.pos[:tokens.shape[1]]
        for i, attn in enumerate(self.attn):
            a = (x if self.compress is None else self.compress(x)) + pos
            if i == len(self.attn) - 1:  # the last layer computes the positions that are read out only
                a = attn(a, last_only=first is None, first=first or 0)
                x = x[:, -a.shape[1]:]
            else:
                a = attn(a)
            x = x + (a if self.decompress is None else self.decompress(a))
            if self.mlp is not None:
                x = x + self.mlp[i](x)
        return self.unembed(x[:, -1] if first is None else x)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LowRankSpec:
    """The original's Low_rank baseline (no attention): one learned row of d per context of n - 1 tokens
    and an untied unembedding d -> N, i.e. the context -> next-token logit table factorised at rank d.
    N: vocabulary size. d: rank. n_gram: n (the context is the n - 1 tokens before). init: 'normal' (the
    context rows N(0, 1)) or 'original' (its nn.Linear(d, N ** (n - 1)).weight, U(+-1/sqrt(d)))."""

    N: int
    d: int
    n_gram: int = 3
    init: str = "normal"

    def parameter_count(self):
        return self.N ** (self.n_gram - 1) * self.d + self.d * self.N


def check_low_rank(spec: LowRankSpec) -> list[str]:
    problems = [f"{name} = {getattr(spec, name)!r} must be an integer >= {low}"
                for name, low in (("N", 1), ("d", 1), ("n_gram", 2))
                if isinstance(getattr(spec, name), bool) or not isinstance(getattr(spec, name), int)
                or getattr(spec, name) < low]
    if spec.init not in INITS:
        problems.append(f"init = {spec.init!r} must be one of {', '.join(INITS)}")
    return problems


class LowRank(nn.Module):
    """See ``LowRankSpec``. Reads each window of n - 1 tokens as one context index."""

    def __init__(self, N, d, n_gram=3, init="normal"):
        super().__init__()
        self.N, self.context = N, n_gram - 1
        self.embed = nn.Embedding(N ** self.context, d)
        self.unembed = nn.Linear(d, N, bias=False)
        if init == "original":
            with torch.no_grad():
                self.embed.weight.uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d))
        self.register_buffer("radix", N ** torch.arange(self.context - 1, -1, -1), persistent=False)

    def forward(self, tokens, first=None):
        """As MemoryTransformer.forward; position i reads the n - 1 tokens ending at i (i >= n - 2)."""
        start = tokens.shape[1] - 1 if first is None else first
        if start < self.context - 1:
            raise ValueError(f"position {start} has fewer than the {self.context} context tokens LowRank reads")
        windows = tokens.unfold(1, self.context, 1)[:, start - self.context + 1:]  # (B, T - start, n - 1)
        logits = self.unembed(self.embed((windows * self.radix).sum(-1)))
        return logits[:, -1] if first is None else logits
