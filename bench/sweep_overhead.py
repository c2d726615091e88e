"""Orchestration overhead of a sweep: wall time of a 10-job sweep of tiny runs minus their training.

    python bench/sweep_overhead.py [--jobs 10] [--max-parallel 1 2]

For each parallelism P it runs `python sweep.py --executor local` as a user would (a fresh
interpreter), then reads every run's summary.json. Printed per job:
  overhead_literal = (sweep wall - sum of run train_time) / jobs
  overhead_per_core = (sweep wall * P - sum of run train_time) / jobs   (the cost each job adds to a core)
A benchmark, not a test: it prints figures and asserts nothing about time.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(task="target_functions", target_func="func10", sequence_length=20, train_set_size=200,
            test_set_size=200, model="bloom", n_layer=1, n_head=2, n_embd=32, batch_size=20, n_epochs=3,
            eval_every=1, lr=1e-3, eta_min=1e-5, progress="off")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--max-parallel", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    for parallel in args.max_parallel:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "base.py"
            base.write_text("".join(f"{k} = {v!r}\n" for k, v in TINY.items()))
            t = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "sweep.py"), "--base", str(base), "--vary",
                            f"seed=0x{args.jobs}", "--executor", "local", "--max-parallel", str(parallel),
                            "--yes"], cwd=tmp, check=True, capture_output=True)
            wall = time.perf_counter() - t
            runs = [json.loads(p.read_text()) for p in Path(tmp, "results_new", "0").glob("*/summary.json")]
            assert len(runs) == args.jobs, f"only {len(runs)} runs finished"
            train = sum(r["train_time"] for r in runs)
            run_wall = sum(r["wall_time"] for r in runs)
            print(f"P={parallel} jobs={args.jobs}: sweep wall {wall:.2f}s, sum train_time {train:.2f}s, "
                  f"sum run wall_time {run_wall:.2f}s | overhead per job: literal "
                  f"{(wall - train) / args.jobs:.3f}s, per core {(wall * parallel - train) / args.jobs:.3f}s")


if __name__ == "__main__":
    main()
