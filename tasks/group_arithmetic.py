"""Programme: when and how do 2-layer networks grok group operations? (reference/group_arithmetic.md)

The data is the whole operation table of a finite group (or of an expression mod M): every num_of_ops-tuple
of elements, labelled with their product, split at random into train and test. The model is the paper's
2-layer network: one-hot operands, concatenated, W (no bias), an activation (x^2 by default), V (no bias);
or the original's inner-product variant, or its small transformer (model_type). Training is full batch:
one epoch is one optimiser step on the whole training set.

Faithful to the original (issue 16; docs/group_arithmetic/README.md): split_method 'sklearn',
init_seed_offset 2 and first_layer_init 'per_operand' replay a logged run of the original exactly
(conf/group_arithmetic_fig3_replay.py); complex_init 'real' is the original's complex network.

How much data is needed scales as |G| ln|G|: with use_critical_ratio the training set has
round(corr * (critical_ratio_multiplier - critical_ratio_delta) * ln|G| / |G| * rows) rows (clipped to
[0, rows]); corr is 1, or max irrep degree / 2 for the non-abelian `collection`.

Elements are integers 0..|G|-1:
* modular_addition, M = "m1xm2x..." (Z_m1 x Z_m2 x ...): element (c1, c2, ...) is c1 + m1*(c2 + m2*(c3 + ...))
  (mixed radix, first factor least significant);
* modular_multiplication, M prime: residue r in 1..M-1 is element r - 1;
* sym, S_M: the permutations of 0..M-1 in lexicographic order of their array forms (identity first);
  the label of (a, b) is the product a*b in sympy's convention: apply a first, then b;
* expression: x, y in 0..M-1, label = expression(x, y) mod M (parsed and evaluated from its syntax tree,
  never eval); a / b and inv(b) are the inverse mod M, and a row where an inverse does not exist (b = 0,
  or any b sharing a factor with M) is left out of the table (data fact rows_undefined);
* collection: GAP's element order of SmallGroup(order, id), 0-based (data/smallgroups_*.jsonl.gz).
"""
import ast
import functools
import gzip
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import dataloaders
import models
import optim
from group_mlp import ACTIVATIONS, COMPLEX_INITS, FIRST_LAYER_INITS, MODEL_TYPES
from optim import OPTIMIZERS, SCHEDULES
from settings import CommonSettings, SettingsError, setting, with_defaults
from tasks.base import Data
from tasks.base import Task as BaseTask

DATA_FILE = Path(__file__).resolve().parents[1] / "data" / "smallgroups_nonabelian_upto_64.jsonl.gz"
CRITICAL_MULTIPLIER = 2.7482  # the paper's empirical constant in n ~ |G| ln|G|
SPLIT_METHODS = ("randperm", "sklearn")
GROUP_TYPES = ("modular_addition", "modular_multiplication", "sym", "expression", "collection")
MAX_ROWS = 20_000_000  # operation tables beyond this do not fit a full-batch run on one machine


@with_defaults(n_epochs=3000, batch_size=0, eval_every=1, eval_batch_size=65536)
class Settings(CommonSettings):
    task: str = setting("group_arithmetic", "the research programme (a module of tasks/)")
    group_type: str = setting("modular_addition", "the operation table to learn", choices=GROUP_TYPES)
    M: int | str = setting(23, "modular_addition: modulus or a product 'm1xm2x...'; modular_multiplication, "
                           "expression: modulus; sym: n of S_n; collection: index into the selected groups "
                           "(default 23, the paper's Fig. 3 group, seconds on a CPU; the original's default: 127)")
    num_of_ops: int = setting(2, "operands per example (a*b*c... for 3 or more; expression takes 2)", low=2)
    expression: str | None = setting(None, "group_type expression: an expression in x and y mod M, e.g. "
                                     "'x**2+x*y+y**2' or 'x/y': + - * / ** with integer exponents (negative: "
                                     "of the inverse), inv(a), pow(a, e[, M]); rows where an inverse mod M does "
                                     "not exist (division by 0, ...) are left out")
    group_collection_max_dk: int = setting(0, "group_type collection: use the groups whose largest irrep "
                                           "degree is this", low=0)
    group_collection_file: str | None = setting(None, "Cayley-table file (JSON lines, gzip allowed); None: "
                                                "the project's data/smallgroups_nonabelian_upto_64.jsonl.gz")
    test_size: float = setting(0.7, "fraction of the table held out for testing (ignored with "
                               "use_critical_ratio)", low=0.0, high=1.0)
    use_critical_ratio: bool = setting(False, "size the training set by n ~ |G| ln|G| instead of test_size")
    critical_ratio_multiplier: float = setting(CRITICAL_MULTIPLIER, "with use_critical_ratio: the constant c in "
                                               "n_train = corr * (c - delta) * ln|G| / |G| * rows (rows = "
                                               "|G|^num_of_ops: |G| ln|G| for two operands; paper: 2.7482; vary it, "
                                               "e.g. 1.75, 2.75, 3.75, to cross the data boundary)", low=0.0)
    critical_ratio_delta: float = setting(0.0, "with use_critical_ratio: delta in the formula above; positive "
                                          "means less data")
    split_method: str = setting("randperm", "randperm (default, this project's split since its first runs): "
                                "torch.randperm(seed), n_train = the train fraction of the rows rounded; sklearn: the original's scikit-learn train_test_split(test_size, "
                                "random_state=seed), reproduced with numpy: RandomState(seed).permutation(rows), "
                                "the first ceil(test fraction * rows) to test, the rest (train size floored) to train",
                                choices=SPLIT_METHODS)
    init_seed_offset: int = setting(0, "the initial weights are drawn right after torch.manual_seed(seed + this); "
                                    "0 (default) keeps the run's own seeding; the original seeds torch with seed + 2 "
                                    "(its set_all_seeds: random seed, numpy seed + 1, torch seed + 2): set 2",
                                    low=0)
    first_layer_init: str = setting("concatenated", "initial W: concatenated draws it as one Linear(num_of_ops*|G|, "
                                    "hidden) (default; torch's bound 1/sqrt(num_of_ops*|G|); the original since "
                                    "Sep 2025); "
                                    "per_operand draws one Linear(|G|, hidden) per operand in turn (bound "
                                    "1/sqrt(|G|), sqrt(num_of_ops) larger: the Sep-2024 code of the Fig. 3 log)",
                                    choices=FIRST_LAYER_INITS)
    load_dataset_split: str | None = setting(None, "a torch file {'train_indices': [...], 'test_indices': [...]} of "
                                             "row indices into the table in the original's row order (the "
                                             "original's option of this name); replaces the split (test_size, "
                                             "use_critical_ratio and split_method are then unused)")
    load_initial_layerab: str | None = setting(None, "a torch file {'weight': tensor (hidden_size, num_of_ops*|G|)}: "
                                               "W starts from it (columns operand after operand), as the original's "
                                               "option of this name; the rest is drawn as usual")
    model_type: str = setting("mlp", "mlp: the 2-layer network; transformer: the original's newer option, an "
                              "embedding + learned positions + TransformerEncoder (nhead, num_layers, "
                              "dim_feedforward, no dropout, activation), mean-pooled over the operands, then V",
                              choices=MODEL_TYPES)
    nhead: int = setting(4, "model_type transformer: attention heads (hidden_size must be a multiple)", low=1)
    num_layers: int = setting(2, "model_type transformer: encoder layers", low=1)
    dim_feedforward: int = setting(2048, "model_type transformer: width of each layer's feed-forward block", low=1)
    hidden_size: int = setting(512, "width of the hidden layer (transformer: the model width)", low=1)
    activation: str = setting("sqr", "hidden activation: x^2, relu, silu or relu(x)^2", choices=ACTIVATIONS)
    other_layers: int = setting(0, "extra residual hidden layers act(x + Lx) (0: the 2-layer network)", low=0)
    embed_trainable: bool = setting(False, "train the operand embedding (frozen, it is the identity: one-hot operands)")
    embed_init: str = setting("identity", "with embed_trainable: the embedding's start, identity (one-hot codes) or "
                              "normal (nn.Embedding's N(0, 1) draws: what the original trains from)",
                              choices=("identity", "normal"))
    use_complex_weights: bool = setting(False, "complex W and V; loss and argmax on the real part of the output")
    complex_init: str = setting("real", "with use_complex_weights: real (the original's: the real network's initial "
                                "weights, imaginary parts 0; they get zero gradient and stay 0, so it trains as a "
                                "real network) or random (real and imaginary parts both drawn: a genuinely complex "
                                "network, this project's behaviour before issue 16)", choices=COMPLEX_INITS)
    use_bn: bool = setting(False, "batch norm between W and the activation")
    use_inner_product_act: bool = setting(False, "the hidden layer is the elementwise product of the operands' "
                                          "columns of W, prod_i W_i onehot(x_i), instead of act(their sum) (the "
                                          "original's maps W_i were per operand: first_layer_init 'per_operand')")
    normalize: bool = setting(False, "after every optimiser step, as the original's option: centre W's rows (per "
                              "operand block with first_layer_init 'per_operand') and V's columns; with "
                              "use_inner_product_act scale each W_i row longer than 1 down to norm 1")
    top_layer_init_multiplier: float = setting(1.0, "scale of V's initial weights")
    output_multiplier: float = setting(1.0, "scale of the output logits")
    loss_func: str = setting("nll", "nll: cross-entropy; mse: squared L2 between the class-centred output and "
                             "the centred one-hot target", choices=("nll", "mse"))
    set_weight_reg: float | None = setting(None, "mse only: V is the ridge-regression solution (this lambda) on "
                                           "every training forward; only W is trained", low=0.0)
    optim: str = setting("adam", "optimiser: sgd (momentum), adam (coupled L2 weight decay), adamw, muon (Muon on "
                         "W, Adam on the rest)", choices=OPTIMIZERS)
    fused: bool = setting(False, "adam, adamw, sgd: torch's fused kernel; False (torch's default "
                          "implementation) keeps the numbers of the runs made before optim.py")
    lr_schedule: str = setting("none", "learning rate per optimiser step (see optim.py): none (constant), step, "
                               "exponential, multistep (set in epochs), linear, cosine", choices=SCHEDULES)
    lr: float = setting(0.01, "learning rate (default 0.01, what the paper's Fig. 3 and sweep ran; the original's "
                        "config default: 0.001)", low=0.0)
    weight_decay: float = setting(1e-4, "weight decay: coupled L2 for sgd and adam, decoupled for adamw; muon: "
                                  "decoupled on W, coupled (Adam) on the rest", low=0.0)
    max_grad_norm: float = setting(0.0, "gradient clipping norm; 0 disables clipping (the paper clips nothing)",
                                   low=0.0)
    mixed_precision: str = setting("no", "autocast; 'no' by default: the tables are small and the x^2 "
                                   "network's accuracy thresholds are exact", choices=("auto", "no", "bf16", "fp16"))

    def check(self):
        problems = super().check()
        try:
            order, corr = group_order(self)
        except SettingsError as exc:
            problems.extend(exc.problems)
            order = corr = None
        rows = order ** self.num_of_ops if order is not None else 0
        if order is not None and rows <= MAX_ROWS and self.group_type == "expression" \
                and uses_inverse(parse_expression(self.expression)):
            rows = int((expression_table(self.expression, order) >= 0).sum())  # rows left where it is defined
            if rows == 0:
                problems.append(f"expression = {self.expression!r} is undefined mod {order} at every (x, y): "
                                "each row divides by (or inverts) an element with no inverse mod M")
        if order is None or rows == 0:  # (no rows: said above, with its cause)
            pass
        elif rows > MAX_ROWS:
            problems.append(f"the table of {self.group_type} M = {self.M!r} with num_of_ops = {self.num_of_ops} has "
                            f"{rows:,} rows, more than {MAX_ROWS:,}: choose a smaller group or fewer operands")
        elif self.load_dataset_split is None:
            n_train = split_sizes(rows, order, corr, self)[0]
            where = ("use_critical_ratio gives " if self.use_critical_ratio else f"test_size = {self.test_size} gives ")
            if n_train < 1:
                problems.append(where + f"no training examples out of {rows} rows")
            elif n_train >= rows:
                problems.append(where + f"all {rows} rows to training and none to test: "
                                + ("lower critical_ratio_multiplier or raise critical_ratio_delta"
                                   if self.use_critical_ratio else "raise test_size"))
        if self.set_weight_reg is not None and self.loss_func != "mse":
            problems.append(f"set_weight_reg = {self.set_weight_reg} fits V by ridge regression onto the centred "
                            f"one-hot targets, i.e. the mse loss; it cannot go with loss_func = "
                            f"{self.loss_func!r}: set loss_func = 'mse' or set_weight_reg = None")
        # the network's own refusals (complex weights, the ridge top layer); a group refused above is
        # stood in for by the smallest one, so that they are reported at once too
        problems.extend(models.check(self.model_spec(n_classes=order or 2)))
        if self.optim == "muon" and (self.model_type == "transformer" or self.use_inner_product_act):
            problems.append("optim = 'muon' orthogonalises the MLP's first layer W; it cannot go with "
                            + ("model_type = 'transformer'" if self.model_type == "transformer"
                               else "use_inner_product_act (the original has no single W to give it there)"))
        if self.normalize and self.model_type == "transformer":
            problems.append("normalize applies to model_type = 'mlp' (the original's transformer ignores it)")
        if order is not None and rows <= MAX_ROWS:
            if self.load_dataset_split is not None:
                try:
                    load_split_file(self.load_dataset_split, rows)
                except SettingsError as exc:
                    problems.extend(exc.problems)
            if self.load_initial_layerab is not None:
                try:
                    load_initial_weight(self.load_initial_layerab, (self.hidden_size, self.num_of_ops * order))
                except SettingsError as exc:
                    problems.extend(exc.problems)
                if self.model_type == "transformer":
                    problems.append("load_initial_layerab sets the MLP's first layer W; model_type 'transformer' "
                                    "has none")
        if self.use_complex_weights:
            if self.optim == "muon":
                problems.append("optim = 'muon' orthogonalises real matrices; it cannot go with use_complex_weights")
            if self.mixed_precision in ("bf16", "fp16"):
                problems.append("mixed_precision bf16/fp16 cannot go with use_complex_weights")
        return problems

    def notes(self):
        notes = super().notes()
        if not self.embed_trainable:
            notes += self.no_effect(("embed_init",), ": with embed_trainable = False the embedding is the identity "
                                    "(one-hot operands), as the original's frozen one")
        if not self.use_critical_ratio:
            given = [f"{name} = {getattr(self, name)!r}" for name, default in
                     (("critical_ratio_multiplier", CRITICAL_MULTIPLIER), ("critical_ratio_delta", 0.0))
                     if getattr(self, name) != default]
            if given:
                notes.append(f"{', '.join(given)} has no effect unless use_critical_ratio = True (the split "
                             f"follows test_size = {self.test_size})")
        if self.load_dataset_split is not None and self.use_critical_ratio:
            notes.append(f"use_critical_ratio has no effect: the split is read from load_dataset_split = "
                         f"{self.load_dataset_split!r}")
        if self.use_inner_product_act and self.first_layer_init != "per_operand":
            notes.append("use_inner_product_act with first_layer_init = 'concatenated': the original drew its "
                         "maps W_i per operand (first_layer_init = 'per_operand', columns sqrt(num_of_ops) larger)")
        return notes

    def model_spec(self, n_classes=None):
        """The network these settings ask for; n_classes: the group order if known (else group_order's)."""
        return models.GroupMLPSpec(
            n_classes=group_order(self)[0] if n_classes is None else n_classes, num_of_ops=self.num_of_ops,
            hidden_size=self.hidden_size, activation=self.activation, other_layers=self.other_layers,
            embed_trainable=self.embed_trainable, embed_init=self.embed_init,
            use_complex_weights=self.use_complex_weights, use_bn=self.use_bn,
            top_layer_init_multiplier=self.top_layer_init_multiplier, output_multiplier=self.output_multiplier,
            set_weight_reg=self.set_weight_reg, first_layer_init=self.first_layer_init,
            complex_init=self.complex_init, use_inner_product_act=self.use_inner_product_act,
            model_type=self.model_type, nhead=self.nhead, num_layers=self.num_layers,
            dim_feedforward=self.dim_feedforward)


# ---------------------------------------------------------------- the groups

def parse_orders(M):
    """M as the list of cyclic factors: 23 -> [23]; '2x3x4' -> [2, 3, 4]."""
    if isinstance(M, int):
        return [M]
    try:
        orders = [int(part) for part in str(M).lower().split("x")]
    except ValueError:
        raise SettingsError(f"M = {M!r} is neither an integer nor a product like '2x3x4'")
    return orders


def _int_M(s):
    if not isinstance(s.M, int):
        orders = parse_orders(s.M)
        if len(orders) != 1:
            raise SettingsError(f"M = {s.M!r}: a product of cyclic groups is for group_type 'modular_addition' "
                                f"only; {s.group_type} takes an integer M")
        return orders[0]
    return s.M


def group_order(s):
    """(|G|, corr) of the settings' group, or SettingsError naming what is wrong; reads no table it can avoid."""
    problems = []
    if s.expression is not None and s.group_type != "expression":
        problems.append(f"expression applies to group_type = 'expression', not {s.group_type!r}")
    if s.group_collection_max_dk and s.group_type != "collection":
        problems.append(f"group_collection_max_dk applies to group_type = 'collection', not {s.group_type!r}")
    if s.group_collection_file is not None and s.group_type != "collection":
        problems.append(f"group_collection_file applies to group_type = 'collection', not {s.group_type!r}")
    if problems:
        raise SettingsError(problems)
    if s.group_type == "modular_addition":
        orders = parse_orders(s.M)
        if any(m < 2 for m in orders):
            raise SettingsError(f"M = {s.M!r}: every cyclic factor needs order >= 2")
        return math.prod(orders), 1.0
    M = _int_M(s)
    if s.group_type == "modular_multiplication":
        import sympy
        if M < 3 or not sympy.isprime(M):
            raise SettingsError(f"M = {M}: modular_multiplication needs a prime M >= 3 (the nonzero residues of a "
                                "composite M are not a group)")
        return M - 1, 1.0
    if s.group_type == "sym":
        if M < 2:
            raise SettingsError(f"M = {M}: sym needs n >= 2 for S_n")
        return math.factorial(M), 1.0
    if s.group_type == "expression":
        if s.expression is None:
            raise SettingsError("group_type = 'expression' needs expression, e.g. expression = 'x**2+x*y+y**2'")
        if s.num_of_ops != 2:
            raise SettingsError(f"an expression takes x and y: num_of_ops must be 2, not {s.num_of_ops}")
        if M < 2:
            raise SettingsError(f"M = {M}: expression needs a modulus >= 2")
        parse_expression(s.expression, M)
        return M, 1.0
    group = collection_group(s)
    return group["order"], max(group["irrep_degrees"]) / 2


def cyclic_product_table(orders):
    """Cayley table of Z_m1 x Z_m2 x ...: table[a, b] = a + b componentwise, elements in mixed radix."""
    n = math.prod(orders)
    digits, rest = [], np.arange(n)
    for m in orders:
        digits.append(rest % m)
        rest = rest // m
    table = np.zeros((n, n), dtype=np.int64)
    place = 1
    for d, m in zip(digits, orders):
        table += ((d[:, None] + d[None, :]) % m) * place
        place *= m
    return table


def multiplicative_table(p):
    """Cayley table of (Z/pZ)*: element i is the residue i + 1."""
    r = np.arange(1, p, dtype=np.int64)
    return (r[:, None] * r[None, :]) % p - 1


def symmetric_group(n):
    """The permutations of 0..n-1 (sympy), as an array of array forms in lexicographic order."""
    from sympy.combinatorics.named_groups import SymmetricGroup
    forms = sorted(p.array_form for p in SymmetricGroup(n).generate())
    return np.array(forms, dtype=np.int64).reshape(len(forms), n)


def symmetric_table(n):
    """Cayley table of S_n: table[a, b] = index of 'a then b', i.e. (a*b)(i) = b(a(i)) (sympy's product)."""
    perms = symmetric_group(n)
    composed = perms[np.arange(len(perms))[None, :, None], perms[:, None, :]]  # [a, b, i] = b[a[i]]
    weights = n ** np.arange(n - 1, -1, -1, dtype=np.int64)
    codes = perms @ weights  # lexicographic order of array forms = ascending codes
    return np.searchsorted(codes, composed @ weights)


MAX_EXPONENT = 10 ** 6


def parse_expression(text, M=None):
    """The checked syntax tree (ast.Expression) of an expression in x and y mod M; nothing in it is ever run
    as Python. Allowed: x, y, integers, + - * / ** (an integer exponent, negative meaning a power of the
    inverse), inv(a) (the inverse mod M) and pow(a, e) or pow(a, e, M) (Python's spelling of a modular
    power; its modulus must be M, checked when M is given). a / b is a * inv(b)."""
    if not isinstance(text, str) or not text.strip():
        raise SettingsError("expression must be a non-empty string in x and y, e.g. 'x**2+x*y+y**2'")
    if len(text) > 1000:
        raise SettingsError("expression is longer than 1000 characters")
    if "^" in text:
        raise SettingsError(f"expression = {text!r}: '^' is bitwise XOR in Python, which the original evaluated its "
                            "expressions with ('x^2' is x XOR 2 there), and a power in mathematics; write ** for a "
                            "power (XOR is not offered)")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SettingsError(f"expression = {text!r} is not a valid expression: {exc.msg}")

    def refuse(node, why=None):
        raise SettingsError(f"expression = {text!r}: {ast.unparse(node)!r} is not allowed"
                            + (f": {why}" if why else "; use x, y, integers, + - * / ** (integer exponents), "
                               "inv(a) and pow(a, e) or pow(a, e, M)"))

    def check(node):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            check(node.left)
            if isinstance(node.op, ast.Pow):
                exponent(node.right)
            else:
                check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            check(node.operand)
        elif isinstance(node, ast.Name):
            if node.id not in ("x", "y"):
                refuse(node)
        elif isinstance(node, ast.Constant):
            if type(node.value) is not int:
                refuse(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("inv", "pow"):
            arity = (1,) if node.func.id == "inv" else (2, 3)
            if node.keywords or len(node.args) not in arity:
                refuse(node, f"{node.func.id} takes " + ("1 argument" if node.func.id == "inv" else "2 or 3 arguments"))
            check(node.args[0])
            if node.func.id == "pow":
                exponent(node.args[1])
                if len(node.args) == 3:
                    modulus = _integer(node.args[2])
                    if modulus is None:
                        refuse(node, "the modulus of pow must be an integer")
                    if M is not None and modulus != M:
                        refuse(node, f"the modulus of pow must be M = {M}")
        else:
            refuse(node)

    def exponent(node):
        value = _integer(node)
        if value is None or abs(value) > MAX_EXPONENT:
            refuse(node, "exponents must be integers -10**6..10**6")

    check(tree.body)
    return tree


def uses_inverse(tree):
    """Whether a checked expression tree divides or inverts anywhere (then some rows may be undefined)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return True
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _integer(node.right) < 0:
            return True
        if isinstance(node, ast.Call) and (node.func.id == "inv" or _integer(node.args[1]) < 0):
            return True
    return False


def _integer(node):
    """The value of an integer literal, optionally signed; None for anything else."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign, node = (-sign if isinstance(node.op, ast.USub) else sign), node.operand
    return sign * node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


def inverse_table(M):
    """inv[r] = the inverse of r mod M, or -1 where gcd(r, M) > 1 (0 always; every multiple of a factor of M)."""
    inv = np.full(M, -1, dtype=np.int64)
    for r in range(M):
        if math.gcd(r, M) == 1:
            inv[r] = pow(r, -1, M)
    return inv


def _evaluate(node, env, M, state):
    """Values mod M (int64 arrays) of a checked tree; state['defined'] is cleared where an inverse is missing."""
    def power(base, e):
        if e < 0:
            base, e = invert(base), -e
        result = np.ones_like(base) % M
        while e:
            if e & 1:
                result = (result * base) % M
            base, e = (base * base) % M, e >> 1
        return result

    def invert(values):
        if state.get("inverse") is None:
            state["inverse"] = inverse_table(M)
        inv = state["inverse"][values]
        state["defined"] &= inv >= 0
        return np.where(inv >= 0, inv, 0)

    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left, env, M, state)
        if isinstance(node.op, ast.Pow):
            return power(left, _integer(node.right))
        right = _evaluate(node.right, env, M, state)
        if isinstance(node.op, ast.Add):
            return (left + right) % M
        if isinstance(node.op, ast.Sub):
            return (left - right) % M
        if isinstance(node.op, ast.Div):
            right = invert(right)
        return (left * right) % M
    if isinstance(node, ast.UnaryOp):
        inner = _evaluate(node.operand, env, M, state)
        return (-inner) % M if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Name):
        return env[node.id] % M
    if isinstance(node, ast.Constant):
        return np.full(env["x"].shape, node.value % M, dtype=np.int64)
    base = _evaluate(node.args[0], env, M, state)  # inv(a), pow(a, e[, M])
    return invert(base) if node.func.id == "inv" else power(base, _integer(node.args[1]))


@functools.lru_cache(maxsize=2)  # validation and the data build both ask for it
def expression_table(text, M):
    """table[x, y] = expression(x, y) mod M; -1 where it is undefined (a division by, or inverse of, an element
    with no inverse mod M: those rows are left out of the data)."""
    if M > 3_000_000_000:
        raise SettingsError("M is too large for exact int64 arithmetic mod M")
    grid = np.arange(M, dtype=np.int64)
    env = {"x": np.repeat(grid[:, None], M, axis=1), "y": np.repeat(grid[None, :], M, axis=0)}
    state = {"defined": np.ones((M, M), dtype=bool)}
    table = _evaluate(parse_expression(text, M).body, env, M, state)
    return np.where(state["defined"], table, -1)


@functools.lru_cache(maxsize=4)
def load_collection(path=None):
    """Every record of the Cayley-table file (gzip or plain JSON lines), tables as 0-based int arrays."""
    path = Path(path) if path is not None else DATA_FILE
    if not path.is_file():
        raise SettingsError(f"Cayley-table file not found: {path} (regenerate it with "
                            "python scripts/make_cayley_tables.py)")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                record["table"] = np.asarray(record["table"], dtype=np.int64) - record.get("index_base", 1)
                records.append(record)
    return tuple(records)


def collection_groups(max_dk, path=None):
    return [r for r in load_collection(path) if max(r["irrep_degrees"]) == max_dk]


def collection_group(s):
    records = load_collection(s.group_collection_file)
    selected = collection_groups(s.group_collection_max_dk, s.group_collection_file)
    if not selected:
        counts = {}
        for r in records:
            counts[max(r["irrep_degrees"])] = counts.get(max(r["irrep_degrees"]), 0) + 1
        raise SettingsError(f"group_collection_max_dk = {s.group_collection_max_dk} selects no group of the "
                            f"collection; available largest irrep degrees (number of groups): "
                            + ", ".join(f"{d} ({n})" for d, n in sorted(counts.items())))
    M = _int_M(s)
    if not 0 <= M < len(selected):
        raise SettingsError(f"M = {M} indexes the {len(selected)} groups with largest irrep degree "
                            f"{s.group_collection_max_dk}: choose 0..{len(selected) - 1}")
    return selected[M]


def group_table(s):
    """(Cayley table as an int64 array, facts) of the settings' group."""
    if s.group_type == "modular_addition":
        orders = parse_orders(s.M)
        return cyclic_product_table(orders), {"group": " x ".join(f"Z{m}" for m in orders)}
    M = _int_M(s)
    if s.group_type == "modular_multiplication":
        return multiplicative_table(M), {"group": f"(Z/{M}Z)*"}
    if s.group_type == "sym":
        return symmetric_table(M), {"group": f"S{M}"}
    if s.group_type == "expression":
        table = expression_table(s.expression, M)
        return table, {"group": f"{ast.unparse(parse_expression(s.expression))} mod {M}",
                       "rows_undefined": int((table < 0).sum())}
    g = collection_group(s)
    return g["table"], {"group": f"SmallGroup({g['order']}, {g['smallgroup_id']}) = {g['name']}",
                        "irrep_degrees": g["irrep_degrees"]}


def all_tuples(table, k):
    """Every k-tuple of elements (rows in lexicographic order) and its product, folded left to right."""
    n = table.shape[0]
    x = np.stack(np.meshgrid(*[np.arange(n)] * k, indexing="ij"), axis=-1).reshape(-1, k)
    labels = x[:, 0]
    for i in range(1, k):
        labels = table[labels, x[:, i]]
    return x, labels


def train_fraction(order, corr, s):
    if s.use_critical_ratio:
        p = corr * (s.critical_ratio_multiplier - s.critical_ratio_delta) * math.log(order) / order
        return min(max(p, 0.0), 1.0)
    return 1.0 - s.test_size


def train_count(rows, order, corr, s):
    """Rows given to training: the fraction of the table, rounded to the nearest integer (198 of 529 for
    M = 23 at the critical ratio, as in the paper)."""
    return math.floor(train_fraction(order, corr, s) * rows + 0.5)


def original_test_fraction(order, corr, s):
    """The test_size the original hands to train_test_split, computed as it computes it (same float ops)."""
    if s.use_critical_ratio:
        test_size = 1 - corr * math.log(order) / order * (s.critical_ratio_multiplier - s.critical_ratio_delta)
        return max(min(test_size, 1), 0)
    return s.test_size


def sklearn_split_sizes(rows, test_fraction):
    """(n_train, n_test) of scikit-learn's train_test_split with a float test_size and no train_size:
    n_test = ceil(test_size * rows), n_train = rows - n_test (the train size floored)."""
    n_test = math.ceil(test_fraction * rows)
    return rows - n_test, n_test


def sklearn_split(rows, test_fraction, seed):
    """(train, test) row indices, in order, as train_test_split(..., test_size=test_fraction,
    random_state=seed) picks them (shuffle=True, no stratify: a ShuffleSplit): one permutation from
    numpy's RandomState(seed); test = its first n_test entries, train = the next n_train."""
    n_train, n_test = sklearn_split_sizes(rows, test_fraction)
    permutation = np.random.RandomState(seed).permutation(rows)
    return permutation[n_test:n_test + n_train], permutation[:n_test]


def split_sizes(rows, order, corr, s):
    """(n_train, n_test) that the settings' split_method gives."""
    if s.split_method == "sklearn":
        return sklearn_split_sizes(rows, original_test_fraction(order, corr, s))
    n_train = train_count(rows, order, corr, s)
    return n_train, rows - n_train


def _torch_file(path, setting_name):
    if not Path(path).is_file():
        raise SettingsError(f"{setting_name} = {path!r}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle torch will not load safely, or no torch file at all
        raise SettingsError(f"{setting_name} = {path!r} is not a torch file of tensors and lists "
                            f"(torch.load(weights_only=True) says: {str(exc).splitlines()[0][:200]})")


def load_split_file(path, rows):
    """(train, test) int64 index tensors of a saved split {'train_indices', 'test_indices'}, checked against rows."""
    data = _torch_file(path, "load_dataset_split")
    if not isinstance(data, dict) or not {"train_indices", "test_indices"} <= set(data):
        raise SettingsError(f"load_dataset_split = {path!r} must hold a dict with keys 'train_indices' and "
                            "'test_indices'")
    out = []
    for key in ("train_indices", "test_indices"):
        index = torch.as_tensor(data[key]).reshape(-1)
        # (an empty list is a float tensor: said as empty, not as not integer)
        wrong_type = index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool
        if wrong_type and len(index):
            raise SettingsError(f"load_dataset_split = {path!r}: {key} must be integer row indices")
        if len(index) == 0 or index.min() < 0 or index.max() >= rows:
            raise SettingsError(f"load_dataset_split = {path!r}: {key} must be a non-empty list of row indices "
                                f"0..{rows - 1} (the table has {rows} rows)")
        out.append(index.long())
    return tuple(out)


def load_initial_weight(path, shape):
    """The first layer W of a saved {'weight': tensor} (or a bare tensor), checked against its shape."""
    data = _torch_file(path, "load_initial_layerab")
    weight = data.get("weight") if isinstance(data, dict) else data
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != tuple(shape):
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise SettingsError(f"load_initial_layerab = {path!r} must hold {{'weight': tensor of shape {tuple(shape)}}} "
                            f"(hidden_size, num_of_ops * |G|); found {got}")
    return weight


def original_row_order(orders, num_ops):
    """Our row index of each of the original's rows, in the original's order. Both list every
    num_ops-tuple with the first operand slowest, but the original enumerates the elements of
    Z_m1 x Z_m2 x ... by their digits with the first factor slowest, while their integers (and our order)
    have it least significant: the same rows in another order for a product group, the identity for Z_M."""
    digits = np.stack(np.meshgrid(*[np.arange(m) for m in orders], indexing="ij"), -1).reshape(-1, len(orders))
    places = np.cumprod([1] + list(orders[:-1]))
    element = digits @ places  # the original's k-th element
    n = len(element)
    tuples = np.stack(np.meshgrid(*[element] * num_ops, indexing="ij"), -1).reshape(-1, num_ops)
    return tuples @ (n ** np.arange(num_ops - 1, -1, -1))


# ---------------------------------------------------------------- losses

def mse_loss(out, labels, reduction="mean"):
    """||centre(out) - (onehot - 1/M)||^2 per row, expanded (sum of centre(out) is 0) to avoid the one-hot."""
    out = out.float()
    centred = out - out.mean(dim=1, keepdim=True)
    per_row = centred.square().sum(1) - 2 * centred.gather(1, labels[:, None]).squeeze(1) + 1 - 1 / out.shape[1]
    return per_row.mean() if reduction == "mean" else per_row.sum()


def loss_of(out, labels, loss_func, reduction="mean"):
    if loss_func == "mse":
        return mse_loss(out, labels, reduction)
    return F.cross_entropy(out.float(), labels, reduction=reduction)


# ---------------------------------------------------------------- the task

class Task(BaseTask):
    name = "group_arithmetic"
    Settings = Settings
    report_columns = ("grokking_delay",)
    stackable = True

    @classmethod
    def stack_refusal(cls, s):
        if s.set_weight_reg is not None:
            return "set_weight_reg re-solves V inside the forward pass, in place, which does not stack"
        if s.use_bn:
            return "use_bn keeps running statistics updated in place, which does not stack"
        if s.normalize:
            return "normalize re-centres W after every step of the run's own optimiser, which a stack does not run"
        if s.model_type != "mlp" or s.use_inner_product_act:
            return ("model_type = 'transformer' and use_inner_product_act are not checked under vmap; "
                    "only the MLP stacks")
        return None

    def build_data(self):
        s = self.settings
        table, facts = group_table(s)
        order = table.shape[0]
        corr = max(facts["irrep_degrees"]) / 2 if "irrep_degrees" in facts else 1.0
        x, labels = all_tuples(table, s.num_of_ops)
        if facts.get("rows_undefined"):  # an expression dividing by elements with no inverse mod M
            x, labels = x[labels >= 0], labels[labels >= 0]
        rows = len(x)
        x, labels = torch.from_numpy(x), torch.from_numpy(labels)
        if s.load_dataset_split is not None:
            train, test = load_split_file(s.load_dataset_split, rows)
            if s.group_type == "modular_addition":  # indices into the original's row order
                to_ours = torch.from_numpy(original_row_order(parse_orders(s.M), s.num_of_ops))
                train, test = to_ours[train], to_ours[test]
        elif s.split_method == "sklearn":
            train, test = (torch.from_numpy(i) for i in sklearn_split(rows, original_test_fraction(order, corr, s),
                                                                        s.seed))
            if s.group_type == "modular_addition":  # the original's row order (the identity for one factor)
                to_ours = torch.from_numpy(original_row_order(parse_orders(s.M), s.num_of_ops))
                train, test = to_ours[train], to_ours[test]
        else:
            n_train = train_count(rows, order, corr, s)
            shuffled = torch.randperm(rows, generator=torch.Generator().manual_seed(s.seed))
            train, test = shuffled[:n_train], shuffled[n_train:]
        n_train = len(train)
        splits = {"train": {"x": x[train], "labels": labels[train]},
                  "test": {"x": x[test], "labels": labels[test]}}
        facts.update(group_type=s.group_type, order=order, rows=rows, n_train=n_train, n_test=len(test),
                     train_fraction=round(n_train / rows, 6), corr=corr,
                     train_per_G_lnG=round(n_train / (order * math.log(order)), 4) if order > 1 else None,
                     split=("critical ratio: corr * (c - delta) * ln|G| / |G| with c = "
                            f"{s.critical_ratio_multiplier}, delta = {s.critical_ratio_delta} (test_size ignored)"
                            if s.use_critical_ratio else f"test_size {s.test_size}")
                     + ("; scikit-learn's train_test_split(random_state=seed), as the original"
                        if s.split_method == "sklearn" else ""))
        if s.load_dataset_split is not None:
            facts["split"] = f"loaded from {s.load_dataset_split}"
            facts["train_test_overlap"] = int(np.isin(train.numpy(), test.numpy()).sum())
        return Data(train=splits["train"], splits=splits, facts=facts)

    def build_model(self, data):
        s = self.settings
        if s.use_bn:  # batch norm in training mode needs two rows of a batch: torch raises on one
            n = data.train_size
            b = dataloaders.fixed_batch_size(n, s.batch_size)
            if b == 1 or n % b == 1:
                raise SettingsError(f"use_bn = True needs at least 2 rows in every training batch, but batch_size = "
                                    f"{s.batch_size} on the {n} training rows leaves "
                                    f"{'every batch' if b == 1 else 'the last batch of each epoch'} with 1 row; "
                                    "choose a batch_size that leaves no batch of 1 (0: the full batch), or more "
                                    "training rows")
        if s.init_seed_offset:
            torch.manual_seed(s.seed + s.init_seed_offset)  # the original's set_all_seeds: torch gets seed + 2
        model = models.build(s.model_spec())
        if s.load_initial_layerab is not None:
            weight = load_initial_weight(s.load_initial_layerab, tuple(model.W.weight.shape))
            with torch.no_grad():
                model.W.weight.copy_(weight.to(model.W.weight.dtype))
        return model

    def configure_optimizer(self, model, total_steps, steps_per_epoch=None):
        # muon: the paper's runs orthogonalise the first layer W only; V and the rest get Adam
        muon_params = [model.W.weight] if self.settings.optim == "muon" else None
        optimizer, scheduler = optim.build(model, self.settings, total_steps, steps_per_epoch,
                                           muon_params=muon_params)
        if self.settings.normalize:  # the original normalises right after each optimiser step
            optimizer.register_step_post_hook(lambda *_: model.normalize())
        return optimizer, scheduler

    def training_loss(self, model, batch):
        ridge = batch["labels"] if self.settings.set_weight_reg is not None else None
        return loss_of(model(batch["x"], ridge_labels=ridge), batch["labels"], self.settings.loss_func)

    def evaluate_batch(self, model, batch):
        out = model(batch["x"])
        n = len(out)
        return {"loss": (loss_of(out, batch["labels"], self.settings.loss_func, reduction="sum"), n),
                "accuracy": ((out.argmax(1) == batch["labels"]).sum(), n)}

    def extra_summary(self, data, history):
        from training import first_epochs  # the loop's own first epochs at accuracy 1.0, also in the summary

        firsts = first_epochs(history)
        train_1, test_1 = firsts.get("first_epoch_train_accuracy_1"), firsts.get("first_epoch_test_accuracy_1")
        last = history[-1]
        return {"grokking_delay": test_1 - train_1 if train_1 is not None and test_1 is not None else None,
                "final_train_loss": last.get("train_loss"), "final_test_loss": last.get("test_loss"),
                "group": data.facts.get("group"), "order": data.facts.get("order"),
                "n_train": data.facts.get("n_train"), "train_fraction": data.facts.get("train_fraction")}


# ---------------------------------------------------------------- plots

def plot(folder, out_dir):
    """Accuracy curves of every run, and for a sweep the phase diagram of the data boundary."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import plot as plots

    def title(label, members):
        facts = members[0]["summary"].get("data_facts", {})
        return f"{label}\n{facts.get('group', '')}, n_train {facts.get('n_train', '?')}"

    runs = plots.load_runs(folder)
    if not runs:
        return []
    def chance(run):  # one class of |G|
        order = run["summary"].get("order")
        return 1 / order if order else None

    written = [plots.accuracy_curves(folder, runs, Path(out_dir), title, chance=chance)]
    if len(runs) > 1:
        written.append(_phase_diagram(runs, Path(out_dir) / f"{plots.stem(folder)}_phase.png", plt))
    return written


def _phase_diagram(runs, path, plt):
    """x: data size (critical_ratio_multiplier where the runs used it, else n_train / (|G| ln|G|)).
    Left: when the test set is solved (first epoch with test accuracy 1.0; a red cross where it never was):
    against |G| as colour for several group orders, as the y value for one. Right: final test accuracy."""
    use_mult = all(r["config"].get("use_critical_ratio") for r in runs)
    xs, orders, firsts, finals = [], [], [], []
    for r in runs:
        facts = r["summary"].get("data_facts", {})
        xs.append(r["config"]["critical_ratio_multiplier"] if use_mult else facts.get("train_per_G_lnG", 0.0))
        orders.append(facts.get("order", 0))
        firsts.append(r["summary"].get("first_epoch_test_accuracy_1"))
        finals.append(r["metrics"][-1]["test_accuracy"])
    xlabel = "critical_ratio_multiplier c (n_train = c ln|G| / |G| x rows: c |G| ln|G| for two operands)" \
        if use_mult else "n_train / (|G| ln|G|)"
    distinct = sorted(set(orders))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    # spread runs that share a grid point (seeds) so that every one stays visible
    seen, jitter = {}, []
    span = (max(xs) - min(xs)) or 1.0
    for x, order in zip(xs, orders):
        k = seen.get((x, order), 0)
        seen[(x, order)] = k + 1
        jitter.append(x + (k - 1) * 0.015 * span)
    grokked = [i for i, f in enumerate(firsts) if f is not None]
    never = [i for i, f in enumerate(firsts) if f is None]
    if len(distinct) == 1:
        # the epochs trained (a budget in steps or samples has no n_epochs)
        top = max(r["summary"].get("epochs") or r["metrics"][-1].get("epoch") or 0 for r in runs)
        left.scatter([jitter[i] for i in grokked], [firsts[i] for i in grokked], s=50, label="test accuracy 1.0")
        left.scatter([jitter[i] for i in never], [top] * len(never), marker="x", c="red", s=60,
                     label=f"never 1.0 (within {top:g} epochs)")
        left.set_yscale("log")
        left.set_ylabel("first epoch with test accuracy 1.0")
        left.set_title(f"|G| = {distinct[0]}: when the test set is solved", fontsize=10)
    else:
        rank = {order: i for i, order in enumerate(distinct)}
        if grokked:
            sc = left.scatter([jitter[i] for i in grokked], [rank[orders[i]] for i in grokked],
                              c=[firsts[i] for i in grokked], cmap="viridis", s=60,
                              norm=matplotlib_lognorm([firsts[i] for i in grokked]))
            fig.colorbar(sc, ax=left, label="first epoch with test accuracy 1.0")
        left.scatter([jitter[i] for i in never], [rank[orders[i]] for i in never], marker="x", c="red", s=60,
                     label="test accuracy never 1.0")
        left.set_yticks(range(len(distinct)), [str(o) for o in distinct])
        left.set_ylabel("|G|")
        left.set_title("when the test set is solved", fontsize=10)
    left.set_xlabel(xlabel)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    for order in distinct:
        by_x = {}
        for x, o, f in sorted(zip(xs, orders, finals)):
            if o == order:
                by_x.setdefault(x, []).append(f)
        right.plot(list(by_x), [sum(v) / len(v) for v in by_x.values()], "o-", label=f"|G| = {order} (mean)")
        right.scatter([x for x, o in zip(jitter, orders) if o == order],
                      [f for f, o in zip(finals, orders) if o == order], s=12, alpha=0.5)
    right.set_xlabel(xlabel)
    right.set_ylabel("final test accuracy")
    right.set_ylim(-0.03, 1.03)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def matplotlib_lognorm(values):
    from matplotlib.colors import LogNorm, Normalize
    lo, hi = max(1, min(values)), max(values)
    return LogNorm(vmin=lo, vmax=hi) if hi > lo else Normalize(vmin=lo - 1, vmax=hi + 1)
