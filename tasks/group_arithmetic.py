"""Programme: when and how do 2-layer networks grok group operations? (reference/group_arithmetic.md)

The data is the whole operation table of a finite group (or of a polynomial mod M): every num_of_ops-tuple
of elements, labelled with their product, split at random into train and test. The model is the paper's
2-layer network: one-hot operands, concatenated, W (no bias), an activation (x^2 by default), V (no bias).
Training is full batch: one epoch is one optimiser step on the whole training set.

How much data is needed scales as |G| ln|G|: with use_critical_ratio the training set has
round(corr * (critical_ratio_multiplier - critical_ratio_delta) * ln|G| / |G| * rows) rows (clipped to
[0, rows]); corr is 1, or max irrep degree / 2 for the non-abelian `collection`.

Elements are integers 0..|G|-1:
* modular_addition, M = "m1xm2x..." (Z_m1 x Z_m2 x ...): element (c1, c2, ...) is c1 + m1*(c2 + m2*(c3 + ...))
  (mixed radix, first factor least significant);
* modular_multiplication, M prime: residue r in 1..M-1 is element r - 1;
* sym, S_M: the permutations of 0..M-1 in lexicographic order of their array forms (identity first);
  the label of (a, b) is the product a*b in sympy's convention: apply a first, then b;
* expression: x, y in 0..M-1, label = expression(x, y) mod M (parsed into sympy without eval);
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

import models
import optim
from group_mlp import ACTIVATIONS
from optim import OPTIMIZERS, SCHEDULES
from settings import CommonSettings, SettingsError, setting, with_defaults
from tasks.base import Data
from tasks.base import Task as BaseTask

DATA_FILE = Path(__file__).resolve().parents[1] / "data" / "smallgroups_nonabelian_upto_64.jsonl.gz"
CRITICAL_MULTIPLIER = 2.7482  # the paper's empirical constant in n ~ |G| ln|G|
GROUP_TYPES = ("modular_addition", "modular_multiplication", "sym", "expression", "collection")
MAX_ROWS = 20_000_000  # operation tables beyond this do not fit a full-batch run on one machine


@with_defaults(n_epochs=3000, batch_size=0, eval_every=1, eval_batch_size=65536)
class Settings(CommonSettings):
    task: str = setting("group_arithmetic", "the research programme (a module of tasks/)")
    group_type: str = setting("modular_addition", "the operation table to learn", choices=GROUP_TYPES)
    M: int | str = setting(23, "modular_addition: modulus or a product 'm1xm2x...'; modular_multiplication, "
                           "expression: modulus; sym: n of S_n; collection: index into the selected groups")
    num_of_ops: int = setting(2, "operands per example (a*b*c... for 3 or more; expression takes 2)", low=2)
    expression: str | None = setting(None, "group_type expression: a polynomial in x and y, e.g. 'x**2+x*y+y**2' "
                                     "(+ - * ** and integers only)")
    group_collection_max_dk: int = setting(0, "group_type collection: use the groups whose largest irrep "
                                           "degree is this", low=0)
    group_collection_file: str | None = setting(None, "Cayley-table file (JSON lines, gzip allowed); None: "
                                                "the project's data/smallgroups_nonabelian_upto_64.jsonl.gz")
    test_size: float = setting(0.7, "fraction of the table held out for testing (ignored with "
                               "use_critical_ratio)", low=0.0, high=1.0)
    use_critical_ratio: bool = setting(False, "size the training set by n ~ |G| ln|G| instead of test_size")
    critical_ratio_multiplier: float = setting(CRITICAL_MULTIPLIER, "with use_critical_ratio: the constant c in "
                                               "n_train = corr * (c - delta) * |G| ln|G| (paper: 2.7482; vary it, "
                                               "e.g. 1.75, 2.75, 3.75, to cross the data boundary)", low=0.0)
    critical_ratio_delta: float = setting(0.0, "with use_critical_ratio: delta in the formula above; positive "
                                          "means less data")
    hidden_size: int = setting(512, "width of the hidden layer", low=1)
    activation: str = setting("sqr", "hidden activation: x^2, relu, silu or relu(x)^2", choices=ACTIVATIONS)
    other_layers: int = setting(0, "extra residual hidden layers act(x + Lx) (0: the 2-layer network)", low=0)
    embed_trainable: bool = setting(False, "train the (identity-initialised) operand embedding")
    use_complex_weights: bool = setting(False, "complex W and V; loss and argmax on the real part of the output")
    use_bn: bool = setting(False, "batch norm between W and the activation")
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
    lr: float = setting(0.01, "learning rate", low=0.0)
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
        if order is None:
            pass
        elif rows > MAX_ROWS:
            problems.append(f"the table of {self.group_type} M = {self.M!r} with num_of_ops = {self.num_of_ops} has "
                            f"{rows:,} rows, more than {MAX_ROWS:,}: choose a smaller group or fewer operands")
        else:
            n_train = train_count(rows, order, corr, self)
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
        if self.use_complex_weights:
            if self.optim == "muon":
                problems.append("optim = 'muon' orthogonalises real matrices; it cannot go with use_complex_weights")
            if self.mixed_precision in ("bf16", "fp16"):
                problems.append("mixed_precision bf16/fp16 cannot go with use_complex_weights")
        return problems

    def notes(self):
        notes = super().notes()
        if not self.use_critical_ratio:
            given = [f"{name} = {getattr(self, name)!r}" for name, default in
                     (("critical_ratio_multiplier", CRITICAL_MULTIPLIER), ("critical_ratio_delta", 0.0))
                     if getattr(self, name) != default]
            if given:
                notes.append(f"{', '.join(given)} has no effect unless use_critical_ratio = True (the split "
                             f"follows test_size = {self.test_size})")
        return notes

    def model_spec(self, n_classes=None):
        """The network these settings ask for; n_classes: the group order if known (else group_order's)."""
        return models.GroupMLPSpec(
            n_classes=group_order(self)[0] if n_classes is None else n_classes, num_of_ops=self.num_of_ops,
            hidden_size=self.hidden_size, activation=self.activation, other_layers=self.other_layers,
            embed_trainable=self.embed_trainable, use_complex_weights=self.use_complex_weights, use_bn=self.use_bn,
            top_layer_init_multiplier=self.top_layer_init_multiplier, output_multiplier=self.output_multiplier,
            set_weight_reg=self.set_weight_reg)


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
        parse_expression(s.expression)
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


_ALLOWED_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Pow: "**"}


def parse_expression(text):
    """A sympy expression in x and y built from the text's syntax tree; nothing is evaluated as Python."""
    import sympy
    if not isinstance(text, str) or not text.strip():
        raise SettingsError("expression must be a non-empty string in x and y, e.g. 'x**2+x*y+y**2'")
    if len(text) > 1000:
        raise SettingsError("expression is longer than 1000 characters")
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise SettingsError(f"expression = {text!r} is not a valid expression: {exc.msg}")
    symbols = {"x": sympy.Symbol("x", integer=True), "y": sympy.Symbol("y", integer=True)}

    def build(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _ALLOWED_BINOPS:
            left = build(node.left)
            if isinstance(node.op, ast.Pow):
                if not (isinstance(node.right, ast.Constant) and type(node.right.value) is int
                        and 0 <= node.right.value <= 10 ** 6):
                    raise SettingsError(f"expression = {text!r}: exponents must be integers 0..10**6")
                return left ** sympy.Integer(node.right.value)
            right = build(node.right)
            return {ast.Add: lambda: left + right, ast.Sub: lambda: left - right,
                    ast.Mult: lambda: left * right}[type(node.op)]()
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = build(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.Name) and node.id in symbols:
            return symbols[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return sympy.Integer(node.value)
        raise SettingsError(f"expression = {text!r}: {ast.unparse(node)!r} is not allowed; use x, y, integers, "
                            "+, -, * and ** with an integer exponent")
    return build(tree.body)


def _eval_mod(expr, env, M):
    """Vectorised value of a sympy polynomial mod M on int64 arrays (every intermediate reduced mod M)."""
    if expr.is_Integer:
        return np.full(env["x"].shape, int(expr) % M, dtype=np.int64)
    if expr.is_Symbol:
        return env[expr.name] % M
    args = [_eval_mod(a, env, M) for a in expr.args] if not expr.is_Pow else None
    if expr.is_Add:
        return functools.reduce(lambda a, b: (a + b) % M, args)
    if expr.is_Mul:
        return functools.reduce(lambda a, b: (a * b) % M, args)
    if expr.is_Pow and expr.exp.is_Integer and int(expr.exp) >= 0:
        base, e = _eval_mod(expr.base, env, M), int(expr.exp)
        result = np.ones_like(base) % M
        while e:
            if e & 1:
                result = (result * base) % M
            base, e = (base * base) % M, e >> 1
        return result
    raise SettingsError(f"cannot evaluate {expr} modulo {M}")


def expression_table(text, M):
    """table[x, y] = expression(x, y) mod M."""
    if M > 3_000_000_000:
        raise SettingsError("M is too large for exact int64 arithmetic mod M")
    grid = np.arange(M, dtype=np.int64)
    env = {"x": np.repeat(grid[:, None], M, axis=1), "y": np.repeat(grid[None, :], M, axis=0)}
    return _eval_mod(parse_expression(text), env, M)


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
        return expression_table(s.expression, M), {"group": f"{parse_expression(s.expression)} mod {M}"}
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
        return None

    def build_data(self):
        s = self.settings
        table, facts = group_table(s)
        order = table.shape[0]
        corr = max(facts["irrep_degrees"]) / 2 if "irrep_degrees" in facts else 1.0
        x, labels = all_tuples(table, s.num_of_ops)
        rows = len(x)
        n_train = train_count(rows, order, corr, s)
        generator = torch.Generator().manual_seed(s.seed)
        shuffled = torch.randperm(rows, generator=generator)
        x, labels = torch.from_numpy(x), torch.from_numpy(labels)
        train, test = shuffled[:n_train], shuffled[n_train:]
        splits = {"train": {"x": x[train], "labels": labels[train]},
                  "test": {"x": x[test], "labels": labels[test]}}
        facts.update(group_type=s.group_type, order=order, rows=rows, n_train=n_train, n_test=rows - n_train,
                     train_fraction=round(n_train / rows, 6), corr=corr,
                     train_per_G_lnG=round(n_train / (order * math.log(order)), 4) if order > 1 else None,
                     split=("critical ratio: corr * (c - delta) * ln|G| / |G| with c = "
                            f"{s.critical_ratio_multiplier}, delta = {s.critical_ratio_delta} (test_size ignored)"
                            if s.use_critical_ratio else f"test_size {s.test_size}"))
        return Data(train=splits["train"], splits=splits, facts=facts)

    def configure_optimizer(self, model, total_steps, steps_per_epoch=None):
        # muon: the paper's runs orthogonalise the first layer W only; V and the rest get Adam
        return optim.build(model, self.settings, total_steps, steps_per_epoch, muon_params=[model.W.weight])

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
    xlabel = "critical_ratio_multiplier c (n_train = c |G| ln|G|)" if use_mult else "n_train / (|G| ln|G|)"
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
        top = max(r["config"]["n_epochs"] for r in runs)
        left.scatter([jitter[i] for i in grokked], [firsts[i] for i in grokked], s=50, label="test accuracy 1.0")
        left.scatter([jitter[i] for i in never], [top] * len(never), marker="x", c="red", s=60,
                     label=f"never 1.0 (within {top} epochs)")
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
