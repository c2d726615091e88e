"""Associative memory: the time of one run with the notebook's settings (N = 50, d = d_h = 10, H = 11, 64
epochs of 64 batches of 256 = 4096 Adam steps) through main.run, start to summary, data included, and the
time of sampling its data alone.

    python bench/assoc_memory.py [--repeats 3] [--set H=31 ...] [--profile]

Printed: the machine's load (the machine is shared: read the figures with it), the measured matmul peak
of the threads the run uses, the data time, and per run the wall time (main.run start to summary), train
time, steps/s, samples/s and the fraction of the matmul peak the training FLOPs reach (an estimate:
3 x the forward FLOPs of the matmuls and of the attention products). With --profile, the top functions of
one run by internal time (cProfile). A benchmark, not a test: it asserts nothing about time.
The original code needs 35-42 s for such a run (reference/assoc_memory.md).
"""
import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from matmul import matmul_peak  # noqa: E402

NOTEBOOK = dict(task="assoc_memory", N=50, alphas=[1.0, 1.0, 1.0], model="aot", d=10, d_h=None, H=11,
                nb_layers=1, batch_size=256, num_batch=64, n_epochs=64, lr=1e-2, lr_end=5e-4, eval_every=16,
                progress="off", seed=0)


def train_flops_per_sample(s):
    """3 x forward FLOPs of one sequence: every position through all but the last layer, the last position
    through the last layer (the model computes only what the last prediction needs)."""
    d, d_h, H, N, W, L = s.d, s.head_dim, s.H, s.N, s.W if s.model == "transformer" else 0, s.nb_layers
    T = s.n_gram - 1
    compress = 2 * d * d_h if d != d_h else 0

    def layer(queries):
        kv = T * (compress + 2 * 2 * d_h * H * d_h)
        q = queries * 2 * d_h * H * d_h
        scores = queries * T * H * d_h * 2 * 2  # scores and the weighted sum of values
        out = queries * (2 * H * d_h * d_h + compress)
        mlp = queries * 4 * d * W
        return kv + q + scores + out + mlp

    forward = (L - 1) * layer(T) + layer(1) + 2 * d * N
    return 3 * forward


def one_run(values, profile=False):
    import main
    import settings
    s = settings.build(values)
    with tempfile.TemporaryDirectory() as tmp:
        t, cpu = time.perf_counter(), time.process_time()
        if profile:
            prof = cProfile.Profile()
            summary = prof.runcall(main.run, s, Path(tmp) / "run")
        else:
            prof, summary = None, main.run(s, Path(tmp) / "run")
        outer, cpu = time.perf_counter() - t, time.process_time() - cpu
    return s, summary, outer, cpu, prof


def main_():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="runs timed (the first includes warm-up costs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--profile", action="store_true", help="cProfile one more run and print its top functions")
    args = p.parse_args()

    import settings
    import torch
    from tasks import assoc_memory as am
    values = dict(NOTEBOOK)
    values.update(settings.parse_override(o) for o in args.overrides)
    s = settings.build(values)
    threads = s.threads or torch.get_num_threads()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on "
          f"{os.cpu_count()} cores; torch {torch.__version__}, run threads {threads}")
    peak = matmul_peak(threads)
    print(f"matmul peak ({threads} thread{'s' * (threads > 1)}, 512x512 float32): {peak:.1f} GFLOP/s")

    class Quiet:
        def info(self, *a):
            pass
    times = []
    for _ in range(5):
        t = time.perf_counter()
        am.Task(s, Quiet()).build_data()
        times.append(time.perf_counter() - t)
    n = s.batch_size * s.num_batch
    tables = am.power_unif_law(s.alphas, s.support, s.N, torch.Generator().manual_seed(0))
    sample = []
    for _ in range(5):
        t = time.perf_counter()
        am.sample_sequences(tables, n, torch.Generator().manual_seed(0))
        sample.append(time.perf_counter() - t)
    print(f"data alone: build_data (tables, {n:,} sequences, contexts split) median "
          f"{statistics.median(times) * 1e3:.1f} ms; sampling the sequences alone median "
          f"{statistics.median(sample) * 1e3:.1f} ms")

    flops = train_flops_per_sample(s) * s.batch_size
    for i in range(args.repeats):
        s, summary, outer, cpu, _ = one_run(values)
        steps = summary["steps"]
        rate = steps / summary["train_time"]
        print(f"run {i}: wall {summary['wall_time']:.2f}s (main.run start to summary; outside {outer:.2f}s), "
              f"data {summary['data_time']:.3f}s, train {summary['train_time']:.2f}s, eval "
              f"{summary['eval_time']:.2f}s | {rate:.0f} steps/s, {rate * s.batch_size:,.0f} samples/s, "
              f"{flops * rate / 1e9:.2f} GFLOP/s = {flops * rate / 1e9 / peak:.1%} of the matmul peak | "
              f"last_batches_accuracy {summary['final']['last_batches_accuracy']:.3f}")
        print(f"       CPU time of the process {cpu:.2f}s (about the wall time on a quiet machine: the run uses "
              f"{threads} thread{'s' * (threads > 1)}); load average now {os.getloadavg()[0]:.2f}")
    if args.profile:
        _, summary, outer, cpu, prof = one_run(values, profile=True)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
        print(f"profiled run: wall {summary['wall_time']:.2f}s (profiler overhead included)")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])


if __name__ == "__main__":
    main_()
