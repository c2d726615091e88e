"""Programme: implicit reasoning over a synthetic knowledge graph: does a transformer learn to compose two
facts (composition) or to compare two attribute values (comparison) without chain of thought, in
distribution (ID) and out of it (OOD)? (reference/kg_reasoning.md; Wang et al. 2024, "Grokked
Transformers are Implicit Reasoners")

Composition. Every entity is the head of `out_degree` atomic facts (h, r) -> t over distinct relations
drawn without replacement, each to a uniform random tail (self-loops allowed), so (h, r) -> t is a function.
A random `ood_share` of these edges is OOD. Every two-hop path (h, r1, b), (b, r2, t) is an inferred fact
(h, r1, r2) -> t: both hops ID -> test_inferred_id with probability `test_share`, else the training pool;
both hops OOD -> test_inferred_ood; mixed -> dropped. The pool is downsampled to round(phi * |ID atomic|).
Training set: all atomic facts (ID and OOD) plus the downsampled pool.

Comparison. Every (entity, attribute) has a value in 0..n_values-1 (uniform). For each attribute a fresh
random `ood_share` of the entities is OOD. Queries compare two entities on one attribute (both orders of a
pair): both ID -> test share to test_inferred_id, the rest to the pool; both OOD -> test_inferred_ood;
mixed -> dropped. The pool is downsampled to round(phi * |ID atomic|).

Token formats (the original's; the sequence is its target_text, the loss covers the tokens after the input):
    composition atomic    <e_h><r_j><e_t></a>                input <e_h><r_j>
    composition inferred  <e_h><r_1><r_2><e_t></a>           input <e_h><r_1><r_2>
    comparison atomic     <e_i><attr_a><v></a>               input <e_i><attr_a>       (<v> is <0>..<19>)
    comparison inferred   <attr_a><q><e_1><mask><e_2><attr_a_k></a>                   (k: 0 <, 1 =, 2 >)
The vocabulary is the original's list in its order (composition: entities, relations, the six specials;
comparison: entities, attributes, values, specials, labels) plus <pad> at the end (training pads the
shorter atomic sequences on the right; padding is never scored and, the model being causal, never read).

Evaluation splits (one per type, at most eval_size facts each; sizes in logs.log):
    id_atomic, ood_atomic       atomic facts (both are trained on)
    train_inferred              a subsample of the inferred facts trained on
    test_inferred_id            held-out inferred facts whose hops / entities are ID: the grokking curve
    test_inferred_ood           inferred facts over OOD hops / entities: NOT a validation set (the
                                original wrote it to valid.json, so users watching "valid" saw no grokking)
Metrics per split: accuracy = the greedy answer (argmax of the next-token logits after the input) is the
target entity / label (the answer is one token, so one batched forward pass decides it); exact_match = the
greedy continuation is answer then </a> (the original's exact match of the generated tokens); loss = mean
cross-entropy over the target tokens (answer and </a>).

summary.json adds, per type, the first step where accuracy reached 0.5, 0.9 and 0.99
(first_step_<split>_accuracy_0.5 ...; comparison adds 0.75 and reports it instead of 0.5, which a constant
answer nearly scores there: "less" and "greater" each hold ~47.5% of the pairs at 20 values),
train_fit_step (first step where train_inferred and id_atomic accuracies both reached 0.99, or the one of
them the settings leave non-empty), and grokking_gap_0.9 = the step test_inferred_id reached 0.9 minus
train_fit_step (negative: it generalised before training fitted).
"""
import json
import re
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

import models
import training
from settings import CommonSettings, setting, with_defaults
from tasks.base import Data
from tasks.base import Task as BaseTask
from tasks.base import subsample

GENERATOR_VERSION = 2  # bump when the same settings would draw a different graph (2: comparison's OOD entity
#                        count as the original's where ood_share * n_entities ends in .5)
SPECIALS = ("<mask>", "<sep>", "<a>", "</a>", "<q>", "</q>")
PAD = "<pad>"
PAPER_OOD_SHARE = {"composition": 0.05, "comparison": 0.1}
PAPER_TEST_SHARE = {"composition": 0.005, "comparison": 0.1}
ID_SPLITS = ("id_atomic", "ood_atomic", "train_inferred", "test_inferred_id", "test_inferred_ood")


@with_defaults(n_epochs=None, n_steps=10000, batch_size=512, lr=1e-3, weight_decay=0.1, no_decay_bias_norm=True,
               lr_schedule="constant", warmup_steps=200, max_grad_norm=1.0, eval_every=None,
               eval_every_steps=500, eval_batch_size=4096)
class Settings(CommonSettings):
    task: str = setting("kg_reasoning", "the research programme (a module of tasks/)")
    kind: str = setting("composition", "composition: two-hop (h, r1, r2) -> t; comparison: which of two "
                        "entities has the larger value of an attribute", choices=("composition", "comparison"))
    # ---- the graph
    n_entities: int = setting(200, "entities <e_i> (paper: 2000 composition, 1000 comparison)", low=2)
    n_relations: int = setting(20, "composition: relations <r_j> (paper 200)", low=1)
    out_degree: int = setting(20, "composition: atomic facts per head entity, over distinct relations "
                              "(at most n_relations; paper 20)", low=1)
    n_attributes: int = setting(20, "comparison: attributes <attr_a> (paper 20)", low=1)
    n_values: int = setting(20, "comparison: ordinal values <0>..<n_values-1> per attribute (paper 20)", low=2)
    ood_share: float | None = setting(None, "composition: share of the atomic edges that are OOD; comparison: "
                                      "share of the entities that are OOD, drawn afresh per attribute "
                                      "(None: the paper's 0.05 / 0.1)", low=0.0, high=1.0)
    phi: float = setting(18.0, "inferred training facts per ID atomic fact (the pool is downsampled to "
                         "round(phi * |ID atomic|); all of it when smaller)", low=0.0)
    test_share: float | None = setting(None, "share of the ID inferred facts (composition) or ID pairs "
                                       "(comparison) held out as test_inferred_id (None: the paper's 0.005 / "
                                       "0.1; larger for small graphs so the test set holds thousands of facts)",
                                       low=0.0, high=1.0)
    eval_size: int = setting(3000, "facts per evaluation split at most (the original's 3000)", low=1)
    data_seed: int = setting(0, "seed of the graph and its splits, independent of seed: every run of a sweep "
                             "with the same graph settings sees the same graph")
    # ---- the model: GPT-2 from scratch over the task's own vocabulary
    n_layer: int = setting(4, "decoder layers (paper 8)", low=1)
    n_head: int = setting(4, "attention heads (paper 12)", low=1)
    n_embd: int = setting(128, "width (paper 768)", low=1)
    dropout: float = setting(0.0, "GPT-2's residual, embedding and attention dropout (paper 0.1)", low=0.0,
                             high=1.0)
    layer_repeats: int = setting(1, "run the layer stack this many times (2: parameter sharing, the original's "
                                 "add_recurrence)", low=1)

    @property
    def resolved_ood_share(self):
        return PAPER_OOD_SHARE[self.kind] if self.ood_share is None else self.ood_share

    @property
    def resolved_test_share(self):
        return PAPER_TEST_SHARE[self.kind] if self.test_share is None else self.test_share

    def vocabulary(self):
        return (composition_vocab(self.n_entities, self.n_relations) if self.kind == "composition"
                else comparison_vocab(self.n_entities, self.n_attributes, self.n_values))

    def model_spec(self):
        width = 5 if self.kind == "composition" else 7
        return models.DecoderSpec(model="gpt2", vocab_size=len(self.vocabulary()), max_positions=width,
                                  n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                                  dropout=self.dropout, head="lm", layer_repeats=self.layer_repeats)

    def notes(self):
        # the other kind's graph sizes (kept, not refused, so that a sweep can vary kind)
        other, graph = (("n_attributes", "n_values"), "comparison") if self.kind == "composition" else \
            (("n_relations", "out_degree"), "composition")
        return super().notes() + self.no_effect(other, f" with kind = {self.kind!r}: it sizes the {graph} graph")

    def check(self):
        problems = super().check()
        if self.kind == "composition" and self.out_degree > self.n_relations:
            problems.append(f"out_degree = {self.out_degree} exceeds n_relations = {self.n_relations}: each head "
                            "has out_degree facts over distinct relations")
        if self.n_embd % self.n_head:
            problems.append(f"n_embd = {self.n_embd} is not a multiple of n_head = {self.n_head}")
        else:
            problems.extend(models.check(self.model_spec()))
        return problems


# ---------------------------------------------------------------- vocabularies and formats

def composition_vocab(n_entities, n_relations):
    return ([f"<e_{i}>" for i in range(n_entities)] + [f"<r_{j}>" for j in range(n_relations)]
            + list(SPECIALS) + [PAD])


def comparison_vocab(n_entities, n_attributes, n_values):
    labels = [f"<attr_{a}_{k}>" for a in range(n_attributes) for k in range(3)]
    return ([f"<e_{i}>" for i in range(n_entities)] + [f"<attr_{a}>" for a in range(n_attributes)]
            + [f"<{v}>" for v in range(n_values)] + list(SPECIALS) + labels + [PAD])


TOKEN = re.compile(r"<[^<>]+>")


def encode(text, vocab):
    """Token ids of a text such as '<e_3><r_1><e_7></a>' (the original's formats)."""
    index = {token: i for i, token in enumerate(vocab)}
    tokens = TOKEN.findall(text)
    if "".join(tokens) != text:
        raise ValueError(f"{text!r} is not a sequence of <...> tokens")
    return [index[t] for t in tokens]


def decode(ids, vocab):
    return "".join(vocab[int(i)] for i in ids)


# ---------------------------------------------------------------- generators

class Graph:
    """A generated dataset: token tensors per type (each row a target_text), the vocabulary, and facts."""

    def __init__(self, vocab, types, pool_size, phi_actual, n_id_atomic):
        self.vocab = vocab
        self.types = types  # type -> LongTensor [n, width]; "train_inferred" is the downsampled pool
        self.pool_size = pool_size
        self.phi_actual = phi_actual
        self.n_id_atomic = n_id_atomic

    def train_sequences(self):
        """All atomic facts and the downsampled inferred pool, right-padded to one width."""
        parts = [self.types["id_atomic"], self.types["ood_atomic"], self.types["train_inferred"]]
        width = max(p.shape[1] for p in parts)
        pad = self.vocab.index(PAD)
        return torch.cat([F.pad(p, (0, width - p.shape[1]), value=pad) for p in parts])


def _downsample(n, count, generator):
    """Indices of `count` of n items drawn without replacement (all, in order, when count >= n)."""
    if count >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:count]


def make_composition(n_entities, n_relations, out_degree, ood_share, test_share, phi, seed):
    """The composition dataset (see the module docstring), vectorised: O(E * D^2) tensor work."""
    g = torch.Generator().manual_seed(int(seed))
    E, R, D = n_entities, n_relations, out_degree
    rel = torch.rand(E, R, generator=g).argsort(dim=1)[:, :D]       # (h, k) -> relation, distinct per h
    tail = torch.randint(E, (E, D), generator=g)                      # (h, k) -> tail
    n_ood = round(ood_share * E * D)
    ood = torch.zeros(E * D, dtype=torch.bool)
    ood[torch.randperm(E * D, generator=g)[:n_ood]] = True
    ood = ood.view(E, D)

    end = E + R + SPECIALS.index("</a>")
    h_all = torch.arange(E).unsqueeze(1).expand(E, D)
    atomic = torch.stack([h_all, E + rel, tail, torch.full_like(tail, end)], dim=-1).view(-1, 4)
    ood_flat = ood.view(-1)

    # two-hop paths: (h, k1) -> b, (b, k2) -> t
    b = tail                                                          # [E, D]
    h = h_all.unsqueeze(2).expand(E, D, D)
    r1 = rel.unsqueeze(2).expand(E, D, D)
    r2 = rel[b]                                                       # [E, D, D]
    t = tail[b]
    ood1 = ood.unsqueeze(2).expand(E, D, D)
    ood2 = ood[b]
    paths = torch.stack([h, E + r1, E + r2, t, torch.full_like(t, end)], dim=-1).view(-1, 5)
    both_id = (~ood1 & ~ood2).reshape(-1)
    both_ood = (ood1 & ood2).reshape(-1)
    id_paths = paths[both_id]
    held_out = torch.rand(len(id_paths), generator=g) < test_share
    pool = id_paths[~held_out]
    n_id_atomic = int((~ood_flat).sum())
    chosen = pool[_downsample(len(pool), round(phi * n_id_atomic), g)]
    types = {"id_atomic": atomic[~ood_flat], "ood_atomic": atomic[ood_flat], "train_inferred": chosen,
             "test_inferred_id": id_paths[held_out], "test_inferred_ood": paths[both_ood]}
    return Graph(composition_vocab(E, R), types, len(pool), len(chosen) / max(n_id_atomic, 1), n_id_atomic)


def compare_labels(v1, v2):
    """0 if v1 < v2, 1 if equal, 2 if v1 > v2 (the original's label index)."""
    return (v1 > v2).long() * 2 + (v1 == v2).long()


def make_comparison(n_entities, n_attributes, n_values, ood_share, test_share, phi, seed):
    """The comparison dataset (see the module docstring); one vectorised pass per attribute."""
    g = torch.Generator().manual_seed(int(seed))
    E, A, V = n_entities, n_attributes, n_values
    values = torch.randint(V, (E, A), generator=g)
    vocab = comparison_vocab(E, A, V)
    attr0, val0 = E, E + A
    spec0 = E + A + V
    end, q, mask = spec0 + SPECIALS.index("</a>"), spec0 + SPECIALS.index("<q>"), spec0 + SPECIALS.index("<mask>")
    label0 = spec0 + len(SPECIALS)
    i, j = torch.triu_indices(E, E, offset=1)
    id_atomic, ood_atomic, pool, test_id, test_ood = [], [], [], [], []

    def queries(a, x, y):
        """Token rows [n, 7] of the queries (attribute a, x vs y); a, x, y are tensors of one length."""
        label = label0 + 3 * a + compare_labels(values[x, a], values[y, a])
        n = len(x)
        return torch.stack([attr0 + a, torch.full((n,), q), x, torch.full((n,), mask), y,
                            label, torch.full((n,), end)], dim=1)

    def both_orders(a, x, y):
        """(a, x, y) of both orders of each pair, int32 (the pool stays small at the paper's size)."""
        a = torch.full((2 * len(x),), a, dtype=torch.int32)
        return torch.stack([a, torch.cat([x, y]).int(), torch.cat([y, x]).int()], dim=1)

    for a in range(A):
        ood = torch.zeros(E, dtype=torch.bool)
        # the original keeps round((1 - share) * E) entities ID and makes the rest OOD (one more or less than
        # round(share * E) where share * E ends in .5: Python rounds halves to even)
        ood[torch.randperm(E, generator=g)[:E - round((1 - ood_share) * E)]] = True
        ents = torch.arange(E)
        atomic = torch.stack([ents, torch.full((E,), attr0 + a), val0 + values[:, a], torch.full((E,), end)], dim=1)
        id_atomic.append(atomic[~ood])
        ood_atomic.append(atomic[ood])
        both_id = ~ood[i] & ~ood[j]
        both_ood = ood[i] & ood[j]
        xi, xj = i[both_id], j[both_id]
        held_out = torch.rand(len(xi), generator=g) < test_share
        pool.append(both_orders(a, xi[~held_out], xj[~held_out]))
        test_id.append(both_orders(a, xi[held_out], xj[held_out]))
        test_ood.append(both_orders(a, i[both_ood], j[both_ood]))
    rows = lambda triples: queries(*triples.long().unbind(dim=1))
    pool = torch.cat(pool)
    id_atomic = torch.cat(id_atomic)
    n_id_atomic = len(id_atomic)
    chosen = rows(pool[_downsample(len(pool), round(phi * n_id_atomic), g)])
    types = {"id_atomic": id_atomic, "ood_atomic": torch.cat(ood_atomic), "train_inferred": chosen,
             "test_inferred_id": rows(torch.cat(test_id)), "test_inferred_ood": rows(torch.cat(test_ood))}
    return Graph(vocab, types, len(pool), len(chosen) / max(n_id_atomic, 1), n_id_atomic)


def make_graph(s):
    """The dataset the settings describe (deterministic in data_seed and the graph settings)."""
    if s.kind == "composition":
        return make_composition(s.n_entities, s.n_relations, s.out_degree, s.resolved_ood_share,
                                s.resolved_test_share, s.phi, s.data_seed)
    return make_comparison(s.n_entities, s.n_attributes, s.n_values, s.resolved_ood_share, s.resolved_test_share,
                           s.phi, s.data_seed)


def evaluation_sets(graph, eval_size, seed):
    """Up to eval_size facts of each type (train_inferred: a subsample of the facts trained on). The held-out
    types draw theirs from a generator of their own, so that runs that differ in phi score the same test
    facts: drawn after train_inferred, whose size grows with phi, from one generator, the subsample of
    test_inferred_id shifted with phi (at CPU scale 2,519 of the 3,000 scored facts in common between phi 18
    and 7.2)."""
    trained = torch.Generator().manual_seed(int(seed) + 1)
    held_out = torch.Generator().manual_seed(zlib.crc32(f"held-out facts, data_seed {int(seed)}".encode()))
    return {name: subsample({"tokens": graph.types[name]}, eval_size,
                            held_out if name.startswith("test_") else trained)["tokens"] for name in ID_SPLITS}


def export_original(graph, folder, eval_size=3000, seed=0):
    """Write the dataset in the original's JSON format: train.json (all atomic facts + the inferred pool),
    test.json (the probes, each with its "type"), valid.json and vocab.json. As in the original, valid.json
    holds the OOD inferred facts (test_inferred_ood): it is no validation set. The original's type name
    test_inferred_iid is kept in test.json so its evaluation scripts read it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = [t for t in graph.vocab if t != PAD]

    def items(rows, kind=None):
        out = []
        for row in rows.tolist():
            target = decode(row, graph.vocab)
            item = {"input_text": decode(row[:-2], graph.vocab), "target_text": target}
            if kind:
                item["type"] = kind
            out.append(item)
        return out

    sets = evaluation_sets(graph, eval_size, seed)
    train = (items(graph.types["id_atomic"]) + items(graph.types["ood_atomic"])
             + items(graph.types["train_inferred"]))
    probes = []
    for name in ID_SPLITS:
        probes += items(sets[name], "test_inferred_iid" if name == "test_inferred_id" else name)
    files = {"train.json": train, "valid.json": items(sets["test_inferred_ood"]), "test.json": probes,
             "vocab.json": vocab}
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))
    return {name: len(content) for name, content in files.items()}


# ---------------------------------------------------------------- the task

class Task(BaseTask):
    name = "kg_reasoning"
    Settings = Settings
    report_columns = ("train_fit_step", "first_step_test_inferred_id_accuracy_0.5",
                      "first_step_test_inferred_id_accuracy_0.9", "grokking_gap_0.9",
                      # how many facts the test accuracies count (a small graph's are a few hundred, or fewer)
                      "facts_test_inferred_id", "facts_test_inferred_ood")
    stackable = True
    counted_in = "step"  # budgeted and evaluated in steps; an epoch is one pass over the training facts

    def build_data(self):
        s = self.settings
        graph = make_graph(s)
        self.graph = graph
        tokens = graph.train_sequences()
        width = graph.types["train_inferred"].shape[1] if len(graph.types["train_inferred"]) else tokens.shape[1]
        # labels: the target tokens only (answer and </a>); input and padding are -100
        labels = torch.full_like(tokens, -100)
        pad = graph.vocab.index(PAD)
        lengths = (tokens != pad).sum(dim=1)
        pos = torch.arange(tokens.shape[1]).unsqueeze(0)
        target = (pos >= (lengths - 2).unsqueeze(1)) & (pos < lengths.unsqueeze(1))
        labels[target] = tokens[target]
        splits = evaluation_sets(graph, s.eval_size, s.data_seed)
        # a split left empty by the settings (ood_share = 0: no OOD facts; test_share = 0: no held-out ID facts;
        # phi = 0: no inferred training facts) has nothing to score: it is not evaluated, and said so
        empty = [name for name, v in splits.items() if not len(v)]
        splits = {name: v for name, v in splits.items() if len(v)}
        types = graph.types
        facts = {"generator_version": GENERATOR_VERSION, "kind": s.kind, "vocab_size": len(graph.vocab),
                 "id_atomic_facts": len(types["id_atomic"]), "ood_atomic_facts": len(types["ood_atomic"]),
                 "inferred_pool": graph.pool_size, "train_inferred_facts": len(types["train_inferred"]),
                 "phi_asked": s.phi, "phi_actual": round(graph.phi_actual, 4),
                 "test_inferred_id_facts": len(types["test_inferred_id"]),
                 "test_inferred_ood_facts": len(types["test_inferred_ood"]),
                 "ood_share": s.resolved_ood_share, "test_share": s.resolved_test_share,
                 "training_sequences": len(tokens), "sequence_width": width,
                 "eval_split_sizes": {name: len(v) for name, v in splits.items()},
                 "note": "test_inferred_ood is the OOD test set, not a validation set"}
        if empty:
            facts["empty_splits"] = (f"{', '.join(empty)}: no facts at ood_share = {s.resolved_ood_share}, test_share = "
                                     f"{s.resolved_test_share}, phi = {s.phi}; not evaluated")
        if s.phi and graph.phi_actual < 0.99 * s.phi and self.log is not None:
            self.log.warning(f"note: phi = {s.phi} asks for {round(s.phi * len(types['id_atomic'])):,} inferred training "
                             f"facts; this graph's pool holds {graph.pool_size:,}, all taken: phi is "
                             f"{graph.phi_actual:.4g} here (a larger graph, n_entities or out_degree, holds more)")
        train = {"tokens": tokens, "labels": labels}
        return Data(train=train, splits={name: {"tokens": v} for name, v in splits.items()}, facts=facts)

    def build_model(self, data):
        s = self.settings
        model = models.build(s.model_spec())
        count = sum(p.numel() for p in model.parameters())
        self.log.info(f"model GPT-2: {s.n_layer} layers x {s.layer_repeats} pass(es), d {s.n_embd}, {s.n_head} heads, "
                      f"dropout {s.dropout}, vocabulary {len(self.graph.vocab)}; {count:,} parameters")
        return model

    def training_loss(self, model, batch):
        return models.lm_loss(model(batch["tokens"]), batch["labels"])

    def evaluate_batch(self, model, batch):
        tokens = batch["tokens"]
        w = tokens.shape[1]
        logits = model(tokens)[:, w - 3:w - 1]                    # predictions of the answer and of </a>
        targets = tokens[:, w - 2:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        right = logits.argmax(dim=-1) == targets
        n = len(tokens)
        return {"accuracy": (right[:, 0].sum(), n), "exact_match": (right.all(dim=1).sum(), n),
                "loss": (loss, 2 * n)}

    def __init__(self, settings, log):
        super().__init__(settings, log)
        if settings.kind == "comparison":  # a constant answer scores ~0.475-0.5 there: 0.5 is chance
            self.report_columns = tuple(c.replace("accuracy_0.5", "accuracy_0.75") for c in self.report_columns)

    def extra_summary(self, data, history):
        out = {}
        thresholds = (0.5, 0.9, 0.99) if self.settings.kind == "composition" else (0.5, 0.75, 0.9, 0.99)
        for threshold in thresholds:
            for key, value in training.first_reached(history, "step", threshold).items():
                out[key] = value
        # the trained splits the settings leave non-empty (phi = 0: no train_inferred) must all be fitted
        trained = [name for name in ("train_inferred", "id_atomic") if any(f"{name}_accuracy" in r for r in history)]
        fit = [r["step"] for r in history
               if trained and all(r.get(f"{name}_accuracy", 0) >= 0.99 for name in trained)]
        out["train_fit_step"] = fit[0] if fit else None
        test = out.get("first_step_test_inferred_id_accuracy_0.9")
        out["grokking_gap_0.9"] = test - fit[0] if fit and test is not None else None
        out["generator_version"] = GENERATOR_VERSION
        sizes = data.facts.get("eval_split_sizes", {})
        out.update({f"facts_{name}": sizes.get(name, 0) for name in ("test_inferred_id", "test_inferred_ood")})
        return out


# ---------------------------------------------------------------- plots

CURVE_STYLE = {"id_atomic": ("tab:blue", ":"), "ood_atomic": ("tab:cyan", ":"),
               "train_inferred": ("tab:green", "-"), "test_inferred_id": ("tab:red", "-"),
               "test_inferred_ood": ("tab:purple", "--")}
SWEEP_AXES = ("phi", "weight_decay", "layer_repeats", "kind", "n_entities", "lr")


def _runs(folder):
    import report
    from results import RunDir
    out = []
    for path in report.run_folders(folder):
        run = RunDir(path)
        config = run.config()
        metrics_file = Path(path) / "metrics.jsonl"
        if not config or not metrics_file.exists():
            continue
        records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
        if records:
            out.append((Path(path), config, records))
    return out


def _phi(path, config):
    """The phi a run asked for, and the phi it trained at where its graph's pool could not give it."""
    from results import RunDir
    actual = ((RunDir(path).summary() or {}).get("data_facts") or {}).get("phi_actual")
    asked = config.get("phi")
    return f"{asked} (trained at {actual:g})" if actual is not None and asked and actual < 0.99 * asked else f"{asked}"


def _panel(ax, records, title, x="step"):
    """Accuracy per type against x: the step, or the epoch (passes over the training facts), which compares
    graphs of different sizes as the paper does."""
    for split, (colour, style) in CURVE_STYLE.items():
        key = f"{split}_accuracy"
        points = [(r[x], r[key]) for r in records if key in r and r.get(x, 0) > 0]
        if points:
            ax.plot(*zip(*points), color=colour, linestyle=style, label=split)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimisation step (log)" if x == "step" else "epoch: passes over the training facts (log)")
    ax.set_ylabel("accuracy (greedy answer)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def plot(folder, out_dir):
    """Accuracy per type against steps (log x): one PNG per run, and for a sweep one panel per varied value
    (phi, weight decay, ...) in a single PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs(folder)
    paths = []
    for path, config, records in runs:
        fig, ax = plt.subplots(figsize=(6, 4))
        _panel(ax, records, f"kg_reasoning {config.get('kind')}: phi {_phi(path, config)}, wd "
                            f"{config.get('weight_decay')}, {config.get('n_entities')} entities, GPT-2 "
                            f"{config.get('n_layer')}x{config.get('n_embd')} (run {path.name})")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        out = Path(out_dir) / f"kg_reasoning_run_{path.name}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        paths.append(out)
    if len(runs) > 1:
        varied = [k for k in SWEEP_AXES if len({repr(c.get(k)) for _, c, _ in runs}) > 1]
        others = [k for k in ("seed",) if len({c.get(k) for _, c, _ in runs}) > 1]
        fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.8), sharey=True, squeeze=False)
        order = sorted(runs, key=lambda r: tuple(repr(r[1].get(k)) if not isinstance(r[1].get(k), (int, float))
                                                 else r[1].get(k) for k in varied + others))
        # graphs of different sizes (n_entities) compare per epoch, as the paper does (|E| at fixed phi); else steps
        x = "epoch" if "n_entities" in varied and all("epoch" in r for _, _, rs in runs for r in rs) else "step"
        for ax, (path, config, records) in zip(axes[0], order):
            label = ", ".join(f"{k}={config.get(k)}" for k in varied + others) or path.name
            _panel(ax, records, label, x)
        axes[0][0].legend(fontsize=7, loc="best")
        fig.suptitle(f"kg_reasoning: accuracy per type vs {x}s, one panel per {' / '.join(varied) or 'run'}",
                     fontsize=10)
        fig.tight_layout()
        out = Path(out_dir) / f"kg_reasoning_sweep_{'_'.join(varied) or 'runs'}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        paths.append(out)
    return paths


# ---------------------------------------------------------------- export from the command line

def main(argv=None):
    """python -m tasks.kg_reasoning CONFIG OUT_DIR [--set name=value ...]: write the graph a settings file
    describes in the original's JSON format (train.json, valid.json = the OOD inferred set, test.json, vocab.json)."""
    import argparse
    import sys

    import settings as settings_module
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("config")
    parser.add_argument("out_dir")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="NAME=VALUE",
                        help="overrides, e.g. --set phi=7.2 --set n_entities=100 (or --set phi=7.2 n_entities=100)")
    args = parser.parse_args(argv)
    try:
        s = settings_module.load(args.config, dict(settings_module.parse_override(text) for text in args.set))
    except settings_module.SettingsError as exc:
        print("error: " + str(exc).replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    counts = export_original(make_graph(s), args.out_dir, s.eval_size, s.data_seed)
    print(", ".join(f"{name} {count} items" for name, count in counts.items()) + f" written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
