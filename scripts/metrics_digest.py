"""Run every conf/ file shrunk to a few seconds and print a digest of each run's metrics.

A refactor must keep the numbers: run this at the old commit and at the new one and compare.

    python scripts/metrics_digest.py --out /tmp/old.json            # at the old commit
    python scripts/metrics_digest.py --out /tmp/new.json --compare /tmp/old.json

Each conf is run as written except for the few settings that make it small (epochs, set sizes, layers;
see SHRINK), one torch thread, in a temporary folder. The digest is every numeric field of every
metrics.jsonl record and of summary.json's final record, except wall-clock timings. --compare reports
each field whose value differs and each field that one side has and the other lacks.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMINGS = {"elapsed", "eval_time", "wall_time", "data_time", "train_time"}


def shrink(values):
    """Overrides that make one conf run in seconds, by task."""
    task = values.get("task", "target_functions")
    if task == "target_functions":
        out = dict(n_epochs=2, eval_every=1, train_set_size=min(values.get("train_set_size", 200), 200),
                   test_set_size=min(values.get("test_set_size", 2000), 200), data_cache=False,
                   eval_batch_size=128)
        if not values.get("pretrained_path"):  # paper-size presets (qwen1.7B: 28 x 2048) shrunk
            out.update(n_layer=min(values.get("n_layer") or 2, 2), n_head=min(values.get("n_head") or 4, 4),
                       n_embd=min(values.get("n_embd") or 128, 128))
        if values.get("sequence_length", 20) > 40:
            out["sequence_length"] = 40
        if values.get("finetune_layers", 0) > 0:
            out["finetune_layers"] = 1  # the tiny checkpoint has 3 layers
        return out
    if task == "group_arithmetic":
        return dict(n_epochs=20, eval_every=5)
    if task == "assoc_memory":
        return dict(n_epochs=3, eval_every=1, num_batch=min(values.get("num_batch", 64), 8))
    if task == "parity_cot":  # paper widths (720) and budgets (10^7 samples) shrunk; n, k, CoT kept
        out = dict(n_samples=64 * 4, batch_size=64, eval_every_samples=None, eval_every_steps=2, n_valid=256,
                   n_embd=32, n_layer=min(values.get("n_layer", 1), 2), n_head=min(values.get("n_head", 1), 2),
                   entropy_samples=32, n_positions=None)
        if values.get("n_train"):
            out.update(n_train=min(values["n_train"], 512), train_eval_size=128)
        return out
    if task == "kg_reasoning":  # a 20-entity graph, a 2 x 32 GPT-2, 4 steps (the paper's 2000-entity 8 x 768 too)
        return dict(n_steps=4, warmup_steps=min(values.get("warmup_steps", 0), 1), eval_every_steps=2,
                    n_entities=min(values.get("n_entities", 200), 20), n_relations=min(values.get("n_relations", 20), 5),
                    out_degree=min(values.get("out_degree", 20), 4), n_attributes=min(values.get("n_attributes", 20), 3),
                    n_values=min(values.get("n_values", 20), 5), test_share=max(values.get("test_share") or 0.0, 0.1),
                    eval_size=100, n_layer=2, n_embd=32, n_head=2, batch_size=64)
    return dict(n_epochs=2, eval_every=1)


def digest_run(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    summary = json.loads((run_dir / "summary.json").read_text())
    fields = {}
    for i, record in enumerate(records):
        for key, value in record.items():
            if key not in TIMINGS and isinstance(value, (int, float)):
                fields[f"metrics[{i}].{key}"] = value
    for key, value in summary.get("final", {}).items():
        if key not in TIMINGS and isinstance(value, (int, float)):
            fields[f"final.{key}"] = value
    for key, value in summary.items():
        if key.startswith(("best_", "first_")) and isinstance(value, (int, float)):
            fields[key] = value
    return fields


def run_conf(path, workdir, pretrained):
    import main
    import settings
    values = settings.load_file(path)
    if values.get("pretrained_path"):
        if pretrained is None:
            return None
        values["pretrained_path"] = str(pretrained)
    values.update(shrink(values))
    values["progress"] = "off"
    run_dir = Path(workdir) / path.stem
    main.run(settings.build(values), run_dir)
    return digest_run(run_dir)


def tiny_pretrained(workdir):
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_checkpoints
    return tiny_checkpoints.write(Path(workdir) / "ckpt")["qwen3"][0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the digest (JSON) here")
    parser.add_argument("--compare", help="a digest written before; report every difference")
    parser.add_argument("--only", nargs="*", help="conf names (stems) to run; default all")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    torch.set_num_threads(1)
    digests = {}
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)  # the data cache and anything else a run writes stay in the temporary folder
        pretrained = tiny_pretrained(workdir)
        for path in sorted((ROOT / "conf").glob("*.py")):
            if args.only and path.stem not in args.only:
                continue
            t = time.time()
            fields = run_conf(path, workdir, pretrained)
            if fields is None:
                continue
            digests[path.stem] = fields
            text = json.dumps(fields, sort_keys=True)
            print(f"{path.stem:<45} {hashlib.sha256(text.encode()).hexdigest()[:16]}  "
                  f"{len(fields):>4} fields  {time.time() - t:5.1f}s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(digests, indent=1, sort_keys=True))
    if args.compare:
        old = json.loads(Path(args.compare).read_text())
        differences = 0
        for name in sorted(set(old) | set(digests)):
            a, b = old.get(name), digests.get(name)
            if a is None or b is None:
                print(f"{name}: only in {'new' if a is None else 'old'}")
                differences += 1
                continue
            for key in sorted(set(a) | set(b)):
                if key not in b:
                    print(f"{name}: {key} = {a[key]!r} only in old")
                elif key not in a:
                    print(f"{name}: {key} = {b[key]!r} only in new")
                elif a[key] != b[key]:
                    print(f"{name}: {key} old {a[key]!r} new {b[key]!r}")
                else:
                    continue
                differences += 1
        print(f"{differences} differences against {args.compare}")
        return 1 if differences else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
