"""The group-arithmetic network, one of the model kinds that models.py builds from a spec:
``GroupMLPSpec`` -> ``check(spec)`` and ``build(spec)`` (reference/group_arithmetic.md).

The paper's 2-layer network: one-hot operands, concatenated, W (no bias), an activation (x^2 by
default), V (no bias); optionally residual hidden layers, batch norm, complex weights, and a top layer
V solved by ridge regression on every training forward instead of trained.
"""
import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = ("sqr", "relu", "silu", "relusqr")
FIRST_LAYER_INITS = ("concatenated", "per_operand")
MODEL_TYPES = ("mlp", "transformer")
COMPLEX_INITS = ("real", "random")
EMBED_INITS = ("identity", "normal")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupMLPSpec:
    """act(W [onehot(a); onehot(b); ...]) -> (other_layers x act(h + Lh)) -> V, as a task asks for it.

    The fields are named as group_arithmetic's settings, so that a problem names what the user wrote.
    n_classes: the group order |G| (each operand's one-hot width and the number of output logits).
    num_of_ops: operands per example. hidden_size: width of W's output. activation: one of ACTIVATIONS
    (x^2, relu, silu, relu(x)^2). other_layers: extra residual hidden layers. embed_trainable: train the
    operand embedding, which starts as embed_init says (identity, or normal: nn.Embedding's N(0, 1)
    draws). use_complex_weights: complex W, L, V; the output is the real part. use_bn: batch norm
    between W and the activation. top_layer_init_multiplier: scale of V's initial weights.
    output_multiplier: scale of the logits. set_weight_reg: None (V is trained) or the ridge lambda of a V
    solved on every training forward (the labels passed as ridge_labels).
    first_layer_init: 'concatenated' (W drawn as one Linear(num_of_ops*n, hidden): torch's default bound
    1/sqrt(num_of_ops*n)) or 'per_operand' (W's column blocks drawn one operand after the other as
    Linear(n, hidden) maps, bound 1/sqrt(n): the original's Sep-2024 code). complex_init (with
    use_complex_weights): 'real' (the weights drawn as the real network's, imaginary parts 0: the original's
    conversion, which stays a real network) or 'random' (real and imaginary parts both drawn).
    use_inner_product_act: the hidden layer is the elementwise product of the operands' columns of W
    (prod_i W_i onehot(x_i)) instead of act(sum); no activation there, no batch norm.
    model_type 'transformer': instead of the MLP, the original's small encoder: a trainable embedding
    Embedding(n, hidden) plus learned positions (std 0.02), num_layers TransformerEncoderLayers (nhead heads,
    dim_feedforward, no dropout, activation), mean-pooled over the operands, then V. Of the fields above it
    uses hidden_size, activation, top_layer_init_multiplier.
    """

    n_classes: int
    num_of_ops: int = 2
    hidden_size: int = 512
    activation: str = "sqr"
    other_layers: int = 0
    embed_trainable: bool = False
    embed_init: str = "identity"
    use_complex_weights: bool = False
    use_bn: bool = False
    top_layer_init_multiplier: float = 1.0
    output_multiplier: float = 1.0
    set_weight_reg: float | None = None
    first_layer_init: str = "concatenated"
    complex_init: str = "real"
    use_inner_product_act: bool = False
    model_type: str = "mlp"
    nhead: int = 4
    num_layers: int = 2
    dim_feedforward: int = 2048


def check(spec: GroupMLPSpec) -> list[str]:
    """What is wrong with spec, one sentence per problem naming the field; empty if it builds."""
    problems = []
    for name, low in (("n_classes", 1), ("num_of_ops", 1), ("hidden_size", 1), ("other_layers", 0), ("nhead", 1),
                      ("num_layers", 1), ("dim_feedforward", 1)):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.append(f"{name} = {value!r} must be an integer >= {low}")
    for name, allowed in (("activation", ACTIVATIONS), ("first_layer_init", FIRST_LAYER_INITS),
                          ("complex_init", COMPLEX_INITS), ("model_type", MODEL_TYPES), ("embed_init", EMBED_INITS)):
        if getattr(spec, name) not in allowed:
            problems.append(f"{name} = {getattr(spec, name)!r} is not one of: {', '.join(map(repr, allowed))}")
    reg = spec.set_weight_reg
    if reg is not None and (isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg >= 0):
        problems.append(f"set_weight_reg = {spec.set_weight_reg!r} must be None or a ridge lambda >= 0")
    if spec.set_weight_reg is not None:
        if spec.use_complex_weights:
            problems.append("set_weight_reg solves a real ridge regression; it cannot go with use_complex_weights")
        if spec.top_layer_init_multiplier != 1.0:
            problems.append("top_layer_init_multiplier has no effect with set_weight_reg: V is overwritten by "
                            "the ridge solution on every training forward")
        if spec.output_multiplier != 1.0:
            problems.append("output_multiplier cannot go with set_weight_reg: the ridge solution fits the "
                            "unscaled output")
    if spec.model_type == "transformer":
        mlp_only = [f"{name} = {getattr(spec, name)!r}" for name, default in
                    (("use_complex_weights", False), ("use_bn", False), ("set_weight_reg", None), ("other_layers", 0),
                     ("embed_trainable", False), ("embed_init", "identity"), ("use_inner_product_act", False),
                     ("output_multiplier", 1.0),
                     ("first_layer_init", "concatenated")) if getattr(spec, name) != default]
        if mlp_only:
            problems.append(f"{', '.join(mlp_only)} applies to model_type = 'mlp', not 'transformer' (its "
                            "embedding is always trained)")
        if isinstance(spec.nhead, int) and spec.nhead >= 1 and spec.hidden_size % spec.nhead:
            problems.append(f"hidden_size = {spec.hidden_size} must be a multiple of nhead = {spec.nhead}")
        return problems
    if spec.use_inner_product_act and spec.use_bn:
        problems.append("use_bn cannot go with use_inner_product_act (the product has no batch norm)")
    if spec.use_complex_weights:
        if spec.activation != "sqr":
            problems.append(f"use_complex_weights needs activation = 'sqr' ({spec.activation!r} is not defined "
                            "for complex numbers)")
        if spec.use_bn:
            problems.append("use_bn cannot go with use_complex_weights (batch norm is real)")
    return problems


def build(spec: GroupMLPSpec) -> nn.Module:
    """The network spec describes (``models.build`` checks the spec first); seed the global RNG before."""
    if spec.model_type == "transformer":
        return GroupTransformer(spec.n_classes, spec.num_of_ops, spec.hidden_size, nhead=spec.nhead,
                                num_layers=spec.num_layers, dim_feedforward=spec.dim_feedforward,
                                activation=spec.activation, top_layer_init_multiplier=spec.top_layer_init_multiplier)
    return GroupMLP(spec.n_classes, spec.num_of_ops, spec.hidden_size, activation=spec.activation,
                    other_layers=spec.other_layers, embed_trainable=spec.embed_trainable, embed_init=spec.embed_init,
                    use_complex_weights=spec.use_complex_weights, use_bn=spec.use_bn,
                    top_layer_init_multiplier=spec.top_layer_init_multiplier,
                    output_multiplier=spec.output_multiplier, ridge_lambda=spec.set_weight_reg,
                    first_layer_init=spec.first_layer_init, complex_init=spec.complex_init,
                    use_inner_product_act=spec.use_inner_product_act)


# The stacked model's own kernels (rows_sum, linear_rows) pay off on a CPU, where they run the K members'
# products and gathers in faster layouts than vmap's rules; their batching rules run in Python, ~0.2 ms a call,
# which on a GPU (where a stacked step is launch overhead, not arithmetic) costs more than they save: measured on
# a CPU at a size where a step is all overhead (Z_5, hidden 8, 8 members), 1.28 ms a step with them against
# 0.83 ms with vmap's own rules. So elsewhere the stacked model uses torch's ops: a gather and sum for the rows,
# F.linear. (A switch, so that tests run that path on a CPU too.)
CPU_KERNELS = True


def _own_kernels(tensor):
    return CPU_KERNELS and tensor.device.type == "cpu" and not tensor.is_complex()


@torch.library.custom_op("reasoning_lab::rows_sum", mutates_args=())
def rows_sum(columns: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Sum of the rows of `columns` that each row of `index` picks (embedding_bag's sum), for a stacked model
    under vmap (stacking.py): its batching rule below runs the K members as one embedding_bag over their
    concatenated rows, which autograd records like any op. (vmap's own rules for embedding_bag or for the
    gathers loop over the members, or are several times slower than K solo embedding_bags.)"""
    return F.embedding_bag(index, columns, mode="sum")


@rows_sum.register_fake
def _(columns, index):
    return columns.new_empty(index.shape[0], columns.shape[1])


def _rows_sum_batched(info, in_dims, columns, index):
    K = info.batch_size
    columns = columns.expand(K, *columns.shape) if in_dims[0] is None else columns.movedim(in_dims[0], 0)
    index = index.expand(K, *index.shape) if in_dims[1] is None else index.movedim(in_dims[1], 0)
    n = columns.shape[1]
    shifted = index + (torch.arange(K, device=index.device) * n).view(K, 1, 1)  # member k's rows follow k-1's
    out = F.embedding_bag(shifted.reshape(-1, index.shape[-1]), columns.reshape(K * n, columns.shape[2]), mode="sum")
    return out.view(K, index.shape[1], -1), 0


rows_sum.register_vmap(_rows_sum_batched)


@torch.library.custom_op("reasoning_lab::linear_rows", mutates_args=())
def linear_rows(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight^T (F.linear without bias) for a stacked model under vmap: its batching rule below runs the K
    members' products in the layouts that are fastest for a narrow output (the group's n classes), where
    vmap's own rule for F.linear, one bmm of x with weight^T, ran 2-2.5x slower per member than a solo
    run's mm (Z_23, hidden 512: 2.8 ms for 8 members against 1.1 ms)."""
    return F.linear(x, weight)


@linear_rows.register_fake
def _(x, weight):
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def _linear_rows_batched(info, in_dims, x, weight):
    K = info.batch_size
    x = x.expand(K, *x.shape) if in_dims[0] is None else x.movedim(in_dims[0], 0)
    weight = weight.expand(K, *weight.shape) if in_dims[1] is None else weight.movedim(in_dims[1], 0)
    shape = x.shape
    out = stacked_linear(x.reshape(K, -1, shape[-1]), weight)
    return out.view(*shape[:-1], weight.shape[1]), 0


linear_rows.register_vmap(_linear_rows_batched)


@torch.library.custom_op("reasoning_lab::stacked_linear", mutates_args=())
def stacked_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Member k's x[k] @ weight[k]^T for x (K, n, h) and weight (K, c, h), computed as (weight[k] @ x[k]^T)^T:
    with c small that product runs at the matmul's speed where x @ weight^T does not. (On the CPUs measured
    both layouts give the same bits; a BLAS may order the sums differently elsewhere.)"""
    return torch.bmm(weight, x.transpose(1, 2)).transpose(1, 2).contiguous()


@stacked_linear.register_fake
def _(x, weight):
    return x.new_empty(x.shape[0], x.shape[1], weight.shape[1])


def _stacked_linear_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _stacked_linear_backward(ctx, grad):
    """grad x: one mm per member into one output (a bmm of this narrow inner size ran ~1.8x slower than K
    solo mm); grad weight: one bmm (as fast as K mm)."""
    x, weight = ctx.saved_tensors
    # under autocast (mixed_precision bf16) the forward ran in grad's dtype; so do the products here, and
    # each gradient is returned in its input's dtype, as autocast's own backward does
    x_, weight_ = x.to(grad.dtype), weight.to(grad.dtype)
    grad_x = grad_weight = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.empty(x.shape, dtype=grad.dtype, device=grad.device)
        for k in range(len(weight_)):
            torch.mm(grad[k], weight_[k], out=grad_x[k])
        grad_x = grad_x.to(x.dtype)
    if ctx.needs_input_grad[1]:
        grad_weight = torch.bmm(grad.transpose(1, 2), x_).to(weight.dtype)
    return grad_x, grad_weight


stacked_linear.register_autograd(_stacked_linear_backward, setup_context=_stacked_linear_setup)


def activate(h, name, inplace=False):
    """The hidden activation; inplace (for evaluations, where no graph is kept) saves a pass over memory."""
    if name == "sqr":
        return h.square_() if inplace else h * h
    if name == "relu":
        return F.relu(h, inplace=inplace)
    if name == "silu":
        return F.silu(h, inplace=inplace)
    return F.relu(h, inplace=inplace).square_() if inplace else F.relu(h).square()


class GroupMLP(nn.Module):
    """act(W [onehot(a); onehot(b); ...]) -> (other_layers x act(h + Lh)) -> V, no biases.

    With a frozen identity embedding, W times the concatenated one-hots is the sum of W's columns picked by
    the operands, which is how it is computed (a gather instead of a matmul with mostly zeros).
    """

    def __init__(self, n_classes, num_ops, hidden_size, activation="sqr", other_layers=0, embed_trainable=False,
                 embed_init="identity", use_complex_weights=False, use_bn=False, top_layer_init_multiplier=1.0,
                 output_multiplier=1.0, ridge_lambda=None, first_layer_init="concatenated", complex_init="real",
                 use_inner_product_act=False):
        super().__init__()
        self.use_inner_product_act, self.first_layer_init = use_inner_product_act, first_layer_init
        # complex_init 'real': every weight is drawn as the real network's (the same random numbers) and
        # converted afterwards, imaginary parts 0
        dtype = torch.cfloat if use_complex_weights and complex_init == "random" else torch.float32
        self.n_classes, self.num_ops, self.activation = n_classes, num_ops, activation
        self.output_multiplier, self.ridge_lambda = output_multiplier, ridge_lambda
        self.embedding = nn.Embedding(n_classes, n_classes)  # N(0, 1) draws: embed_init 'normal' keeps them
        if embed_init == "identity" or not embed_trainable:  # frozen, it is the identity (one-hot operands)
            with torch.no_grad():
                self.embedding.weight.copy_(torch.eye(n_classes))
        self.embedding.weight.requires_grad_(embed_trainable)
        if first_layer_init == "per_operand":
            # the Sep-2024 original's per-operand maps Linear(n, hidden), drawn in operand order; their sum
            # is W times the concatenated one-hots, with columns sqrt(num_ops) larger than one Linear draws
            self.W = nn.utils.skip_init(nn.Linear, num_ops * n_classes, hidden_size, bias=False, dtype=dtype)
            with torch.no_grad():
                blocks = [nn.init.kaiming_uniform_(torch.empty(hidden_size, n_classes, dtype=dtype), a=math.sqrt(5))
                          for _ in range(num_ops)]  # nn.Linear's own initialisation
                self.W.weight.copy_(torch.cat(blocks, 1))
        else:
            self.W = nn.Linear(num_ops * n_classes, hidden_size, bias=False, dtype=dtype)
        self.layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size, bias=False, dtype=dtype)
                                    for _ in range(other_layers))
        self.bn = nn.BatchNorm1d(hidden_size) if use_bn else None
        self.V = nn.Linear(hidden_size, n_classes, bias=False, dtype=dtype)
        with torch.no_grad():
            self.V.weight.mul_(top_layer_init_multiplier)
        if use_complex_weights and complex_init == "real":
            for layer in (self.W, *self.layers, self.V):
                layer.weight = nn.Parameter(layer.weight.detach().to(torch.cfloat))
        if ridge_lambda is not None:
            self.V.weight.requires_grad_(False)  # solved, not trained
        self.register_buffer("offsets", torch.arange(num_ops) * n_classes, persistent=False)
        # set by stacking.py on the module it runs under vmap: embedding_bag has no batching rule (vmap would
        # loop over the members); rows_sum (on a CPU) and a gather (elsewhere) have one
        self.stacked = False

    def features(self, x):
        """Hidden representation (before V) of operand tuples x: (n, num_ops) int64."""
        # every tensor below is a fresh one; not in a stack (vmap has no batching rule for square_)
        inplace = not torch.is_grad_enabled() and not self.stacked
        if self.use_inner_product_act:
            h = self._product(x)
            for layer in self.layers:
                h = activate(h + layer(h), self.activation, inplace)
            return h
        if self.embedding.weight.requires_grad:
            onehots = self.embedding(x).reshape(len(x), -1)
            h = self.W(onehots.to(self.W.weight.dtype))
        else:
            # Rows of a contiguous copy of W^T: gathering from the strided W^T (and its index_put backward)
            # made a step at M=97 twice as slow. embedding_bag sums the picked rows in one kernel and one
            # output buffer (it has no complex kernel, hence the index_select path).
            columns = self.W.weight.t().contiguous()
            if self.stacked and _own_kernels(columns):
                h = rows_sum(columns, x + self.offsets)
            elif self.stacked and not columns.is_complex():  # vmap's own gather rule (embedding_bag has none)
                h = columns[x + self.offsets].sum(1)
            elif not columns.is_complex():
                h = F.embedding_bag(x + self.offsets, columns, mode="sum")
            else:
                h = columns.index_select(0, x[:, 0])
                for i in range(1, self.num_ops):
                    more = columns.index_select(0, x[:, i] + self.offsets[i])
                    h = h.add_(more) if inplace else h + more
        if self.bn is not None:
            h = self.bn(h)
        h = activate(h, self.activation, inplace)
        for layer in self.layers:
            h = activate(h + layer(h), self.activation, inplace)
        return h

    def _product(self, x):
        """prod_i W_i onehot(x_i): the operands' hidden vectors multiplied elementwise (use_inner_product_act)."""
        n = self.n_classes
        if self.embedding.weight.requires_grad:
            parts = [self.embedding(x[:, i]).to(self.W.weight.dtype) @ self.W.weight[:, i * n:(i + 1) * n].t()
                     for i in range(self.num_ops)]
        else:
            columns = self.W.weight.t()
            parts = [columns.index_select(0, x[:, i] + self.offsets[i]) for i in range(self.num_ops)]
        h = parts[0]
        for part in parts[1:]:
            h = h * part
        return h

    @torch.no_grad()
    def normalize(self):
        """The original's `normalize` option, applied after every optimiser step. Inner-product network: each
        row of each operand's block of W scaled down to norm 1 if longer. Otherwise W's rows centred (per
        operand block with first_layer_init 'per_operand', as the Sep-2024 code's separate maps; over the
        whole row as the code since Sep 2025) and V's columns centred over the classes."""
        n, W = self.n_classes, self.W.weight
        blocks = [W[:, i * n:(i + 1) * n] for i in range(self.num_ops)]
        if self.use_inner_product_act:
            for block in blocks:
                block.div_(block.norm(dim=1, keepdim=True).clamp(min=1))
            return
        for block in (blocks if self.first_layer_init == "per_operand" else [W]):
            block.sub_(block.mean(dim=1, keepdim=True))
        self.V.weight.sub_(self.V.weight.mean(dim=0, keepdim=True))

    def forward(self, x, ridge_labels=None):
        """Real output logits. With ridge_labels (training) and a ridge lambda, V is first re-solved."""
        h = self.features(x)
        if ridge_labels is not None and self.ridge_lambda is not None:
            with torch.no_grad():
                self.V.weight.copy_(ridge_solution(h, centred_one_hot(ridge_labels, self.n_classes),
                                                   self.ridge_lambda).t())
        out = linear_rows(h, self.V.weight) if self.stacked and _own_kernels(h) else self.V(h)
        if out.is_complex():
            out = out.real
        return out * self.output_multiplier if self.output_multiplier != 1.0 else out


def centred_one_hot(labels, n_classes):
    return F.one_hot(labels, n_classes).float() - 1.0 / n_classes


def ridge_solution(h, targets, lam):
    """argmin_B ||h B - targets||^2 + lam ||B||^2 through the SVD of h: B = V diag(s / (s^2 + lam)) U^T targets."""
    U, s, Vh = torch.linalg.svd(h.detach().float(), full_matrices=False)
    return Vh.t() @ ((U.t() @ targets) * (s / (s * s + lam))[:, None])


class GroupTransformer(nn.Module):
    """The original's transformer option: embedding + learned positions -> encoder -> mean over operands -> V.

    Built in the original's order (embedding, positions, encoder layers, V) so that a seed draws its weights;
    nn.TransformerEncoder copies one layer num_layers times, so its layers start equal, as there.
    """

    def __init__(self, n_classes, num_ops, hidden_size, nhead=4, num_layers=2, dim_feedforward=2048,
                 activation="relu", top_layer_init_multiplier=1.0):
        super().__init__()
        self.embedding = nn.Embedding(n_classes, hidden_size)
        self.positions = nn.Parameter(torch.zeros(1, num_ops, hidden_size))
        nn.init.normal_(self.positions, mean=0.0, std=0.02)
        act = "relu" if activation == "relu" else (lambda h: activate(h, activation))
        layer = nn.TransformerEncoderLayer(hidden_size, nhead, dim_feedforward=dim_feedforward, dropout=0.0,
                                           activation=act, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.V = nn.Linear(hidden_size, n_classes, bias=False)
        with torch.no_grad():
            self.V.weight.mul_(top_layer_init_multiplier)

    def forward(self, x, ridge_labels=None):
        return self.V(self.encoder(self.embedding(x) + self.positions).mean(dim=1))
