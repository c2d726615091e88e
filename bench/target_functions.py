"""Target-function benchmarks (run by hand; prints figures, asserts nothing about time).

    python bench/target_functions.py [--skip-data] [--skip-job] [--job-repeats N]

1. training throughput (examples/s) of a small BLOOM and a small Qwen3 at L=30, batch 20 and 256,
   through the task's own loss (forward + backward + AdamW step), and the fraction of the machine's
   measured fp32 matmul rate that the model FLOPs reach;
2. data-generation time of every function at L=100 for 10,200 examples (200 train + 10,000 test);
3. the issue's reference job, start to summary as a user runs it (a fresh interpreter), 3 times:
   bloom 2 layers, 4 heads, n_embd 128, L=20, 200/2000 examples, batch 20, 100 epochs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import models  # noqa: E402
import target_functions as tf  # noqa: E402
from matmul import matmul_gflops  # noqa: E402


def throughput(model_name, batch, L=30, steps=30, **shape):
    torch.manual_seed(0)
    model = models.build_classifier(model_name, vocab_size=3, max_positions=L + 2, **shape)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 2, (batch, L + 1))
    y = torch.randint(0, 2, (batch,)).float()

    def step():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t
    with FlopCounterMode(display=False) as counter:  # matmul FLOPs of one forward + backward, as computed
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
    opt.zero_grad(set_to_none=True)
    return batch * steps / seconds, counter.get_total_flops() * steps / seconds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--skip-data", action="store_true")
    p.add_argument("--skip-job", action="store_true")
    p.add_argument("--job-repeats", type=int, default=3, help="runs of the reference job (the machine is noisy)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    peak = matmul_gflops()
    print(f"measured fp32 matmul rate: {peak:.1f} GFLOP/s")
    small = dict(n_layer=2, n_head=4, n_embd=128)
    for name, shape in (("bloom", small), ("qwen0.6B", {**small, "n_kv_head": 2, "intermediate_size": 384})):
        for batch in (20, 256):
            rate, flops = throughput(name, batch, **shape)
            print(f"train {name:9s} L=30 batch {batch:3d}: {rate:8.0f} examples/s, "
                  f"{flops / 1e9:6.2f} GFLOP/s = {flops / 1e9 / peak:.1%} of matmul peak")
    if not args.skip_data:
        for name in tf.FUNCTIONS:
            t = time.perf_counter()
            tf.make_split(name, 100, 200, 10_000, seed=0)
            print(f"data {name:7s} L=100 10,200 examples: {time.perf_counter() - t:7.3f} s")
    if not args.skip_job:
        # eval_every=100 evaluates at epochs 0 and 100, about what the original does in a 100-epoch job
        # (it evaluates once, at epoch 1); eval_every=10 adds nine evaluations of 2,200 strings.
        for eval_every in [100] * args.job_repeats + [10]:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, str(ROOT / "main.py"), "--config", str(ROOT / "conf/target_functions_cpu.py"),
                       "--set", "n_epochs=100", "--set", f"eval_every={eval_every}", "--set", "data_cache=False",
                       "--results-path", "job"]
                t = time.perf_counter()
                out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=True)
                wall = time.perf_counter() - t
                summary = json.loads((Path(tmp) / "job" / "summary.json").read_text())
                print(f"job bloom 2L/4H/128 func10 L=20, 200/2000, batch 20, 100 epochs, eval_every {eval_every}: "
                      f"{wall:.1f} s start to summary (train {summary['train_time']:.1f} s, "
                      f"eval {summary['eval_time']:.1f} s, in-run wall {summary['wall_time']:.1f} s); "
                      f"{out.stdout.strip().splitlines()[0]}")


if __name__ == "__main__":
    main()
