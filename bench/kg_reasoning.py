"""Knowledge-graph reasoning: data generation at the paper's size and training steps/s at CPU scale.

    python bench/kg_reasoning.py [--steps 60] [--threads 1] [--set n_embd=64 ...] [--skip-data]

Printed: the machine's load (it is shared: read the figures with it); the time to generate the paper's
composition dataset (2000 entities, 200 relations, out-degree 20, phi 18: ~720k training facts; the seed's
guide quotes about 15 minutes for the original's script) and comparison dataset (1000 entities, 20
attributes, phi 7.2), the task's whole build_data included; the machine's fp32 matmul rate on the run's
threads (a 1024^3 torch.mm); and the training steps/s of the CPU-scale model (default 4 layers, d 128, 4
heads, batch 512 of the 5-token sequences) with the GFLOP/s its matmuls reach and that rate's fraction.

FLOPs of one training step, counted as 3 x the forward matmul FLOPs (backward = 2 x forward) over the
B x T tokens of the batch (T = 5, padding included: the model computes it):
    per token and layer: 2 (3 d^2 + d^2) for the q, k, v and output projections, 2 (2 x 4 d^2) for the MLP,
    and 2 x 2 T d for the attention products (scores and weighted values over T keys, counted in full);
    per token: 2 d V for the tied output layer (V = vocabulary).
Embedding look-ups, norms, softmax, GELU and the optimiser are not counted (they are memory-bound and small).
A benchmark, not a test: it asserts nothing about time.
"""
import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CPU_MODEL = dict(task="kg_reasoning", kind="composition", n_entities=200, n_relations=20, out_degree=20,
                 ood_share=0.05, test_share=0.05, phi=18.0, n_layer=4, n_embd=128, n_head=4, batch_size=512,
                 lr=1e-3, weight_decay=0.1, warmup_steps=200, n_steps=10000, progress="off")


def flops_per_step(s, batch, width, vocab):
    d, L, T = s.n_embd, s.n_layer * s.layer_repeats, width
    per_token = L * (2 * 4 * d * d + 2 * 8 * d * d + 2 * 2 * T * d) + 2 * d * vocab
    return 3 * batch * T * per_token


def bench_data():
    import settings
    from tasks import kg_reasoning as kg
    for values in (dict(kind="composition", n_entities=2000, n_relations=200, out_degree=20, phi=18.0,
                        ood_share=0.05, test_share=0.005),
                   dict(kind="comparison", n_entities=1000, n_attributes=20, n_values=20, phi=7.2, ood_share=0.1,
                        test_share=0.1)):
        s = settings.build(dict(task="kg_reasoning", **values))
        t = time.perf_counter()
        data = kg.Task(s, log=None).build_data()
        elapsed = time.perf_counter() - t
        f = data.facts
        print(f"data {values['kind']:<11} {values['n_entities']} entities, phi {values['phi']}: {elapsed:6.2f}s for "
              f"{f['training_sequences']:,} training sequences ({f['id_atomic_facts']:,} ID + {f['ood_atomic_facts']:,} "
              f"OOD atomic, {f['train_inferred_facts']:,} inferred of a pool of {f['inferred_pool']:,}); test "
              f"{f['test_inferred_id_facts']:,} ID / {f['test_inferred_ood_facts']:,} OOD inferred", flush=True)


def bench_training(overrides, steps, threads):
    import torch

    import dataloaders
    import models
    import optim
    import settings
    from matmul import matmul_gflops
    from tasks import kg_reasoning as kg
    torch.set_num_threads(threads)
    s = settings.build({**CPU_MODEL, **overrides, "threads": threads})
    task = kg.Task(s, log=None)
    data = task.build_data()
    torch.manual_seed(0)
    model = models.build(s.model_spec())
    optimizer, scheduler = optim.build(model, s, s.n_steps)
    source = dataloaders.make_source(data.train, s.batch_size, s.seed, torch.device("cpu"))
    vocab = len(task.graph.vocab)
    width = data.train["tokens"].shape[1]

    def step():
        batch, _ = source.next()
        loss = task.training_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    per_second = steps / (time.perf_counter() - t)
    peak = matmul_gflops(n=1024, repeats=10)
    flops = flops_per_step(s, s.batch_size, width, vocab)
    rate = flops * per_second / 1e9
    print(f"matmul fp32 on {threads} thread(s): {peak:.1f} GFLOP/s (1024^3 torch.mm)")
    print(f"training {s.n_layer} layers x {s.layer_repeats}, d {s.n_embd}, {s.n_head} heads, batch {s.batch_size} "
          f"x {width} tokens, vocabulary {vocab}: {per_second:.2f} steps/s, {flops / 1e9:.2f} GFLOP a step, "
          f"{rate:.1f} GFLOP/s = {rate / peak:.0%} of the matmul rate", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed training steps (after 5 warm-up steps)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="NAME=VALUE",
                        help="settings of the CPU model, e.g. --set n_embd=64 --set n_layer=2")
    parser.add_argument("--skip-data", action="store_true", help="skip the paper-size data generation")
    args = parser.parse_args(argv)
    import settings
    overrides = dict(settings.parse_override(text) for text in args.set)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if not args.skip_data:
        bench_data()
    bench_training(overrides, args.steps, args.threads)


if __name__ == "__main__":
    main()
