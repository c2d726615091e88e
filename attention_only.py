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
    positional embedding (at least the number of tokens the model reads).
    """

    N: int
    d: int
    H: int
    d_h: int | None = None
    W: int = 0
    nb_layers: int = 1
    context_window: int = 3

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


def check(spec: AttentionOnlySpec) -> list[str]:
    """What is wrong with spec, one sentence per problem naming the field; empty if it builds."""
    problems = []
    for name, low in (("N", 1), ("d", 1), ("H", 1), ("d_h", 1), ("W", 0), ("nb_layers", 1), ("context_window", 1)):
        value = getattr(spec, name)
        if name == "d_h" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.append(f"{name} = {value!r} must be an integer >= {low}" + (" or None (d)" if name == "d_h" else ""))
    return problems


def build(spec: AttentionOnlySpec) -> "MemoryTransformer":
    """The model spec describes (``models.build`` checks the spec first); seed the global RNG before."""
    return MemoryTransformer(spec.N, spec.d, spec.head_dim, spec.H, W=spec.W, nb_layers=spec.nb_layers,
                             context_window=spec.context_window)


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

    def forward(self, a, last_only=False):
        """a: (B, T, d_h) -> (B, T, d_h), or (B, 1, d_h): the output at the last position only."""
        B, T, d_h = a.shape
        queries = a[:, -1:] if last_only else a
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
    no norm; an untied unembedding d -> N. The last layer computes the last position only (the only
    one whose prediction counts).
    """

    def __init__(self, N, d, d_h, H, W=0, nb_layers=1, context_window=3):
        super().__init__()
        self.embed = nn.Embedding(N, d)
        self.pos = nn.Parameter(torch.randn(context_window, d_h))
        self.compress = nn.Linear(d, d_h, bias=False) if d != d_h else None
        self.decompress = nn.Linear(d_h, d, bias=False) if d != d_h else None
        self.attn = nn.ModuleList(ParallelHeads(d_h, H) for _ in range(nb_layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(d, W), nn.GELU(), nn.Linear(W, d, bias=False))
                                 for _ in range(nb_layers)) if W else None
        self.unembed = nn.Linear(d, N, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        pos = self.pos[:tokens.shape[1]]
        for i, attn in enumerate(self.attn):
            last = i == len(self.attn) - 1
            a = attn((x if self.compress is None else self.compress(x)) + pos, last_only=last)
            x = (x[:, -1:] if last else x) + (a if self.decompress is None else self.decompress(a))
            if self.mlp is not None:
                x = x + self.mlp[i](x)
        return self.unembed(x[:, -1])
