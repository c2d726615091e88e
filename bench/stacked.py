"""Replicates one by one against the same replicates stacked (stacking.py, `sweep.py --stack K`).

    python bench/stacked.py [--replicates 8] [--cases assoc_memory,group_arithmetic,parity_cot]
                            [--parity-samples 200000] [--threads 1]

For each case, in this one process (as one sweep worker would): the replicates (seeds 0..K-1) trained one
after another with main.run, then the same replicates trained as one stack with stacking.run_folders, each
from settings to summary.json (data, model, every evaluation, every file written). Printed per case: wall
and CPU time of both (the process's CPU time is what a loaded machine distorts least), the speed-ups, the
largest difference of a final metric between a member and its solo run, and the model's training matmul
FLOP rate (training FLOPs of all replicates / wall time; evaluations not counted) as a fraction of the
machine's measured fp32 matmul rate on the same threads (bench/matmul.matmul_peak).

Cases:
  assoc_memory      N=50, d=d_h=10, H=11, the notebook's 64 epochs of 64 batches of 256 (4,096 steps)
  group_arithmetic  Z_23, hidden 512, x^2, mse, n_train = 3.75 |G| ln|G| (270 of 529), full batch, Adam,
                    3000 epochs, evaluated every 10 (conf/group_arithmetic_cpu.py with c = 3.75)
  parity_cot        the CPU-scale reference job (n=20, k=6, CoT, GPT-2 1 layer x 1 head, width 128, batch 512,
                    10^4 fixed training inputs, evaluated every 20 steps, dropout 0.1 with the default
                    counter noise, which stacks on a CPU; dropout 0 on a GPU, where the masks are torch's and
                    do not stack), --parity-samples samples

The machine is shared: the load average is printed before and after; read the figures with it. Not a test:
nothing is asserted.
"""
import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from matmul import matmul_peak  # noqa: E402

CASES = {
    "assoc_memory": dict(task="assoc_memory", N=50, alphas=[1.0, 1.0, 1.0], model="aot", d=10, d_h=None, H=11,
                         nb_layers=1, batch_size=256, num_batch=64, n_epochs=64, lr=1e-2, lr_end=5e-4,
                         eval_every=16),
    "group_arithmetic": dict(task="group_arithmetic", group_type="modular_addition", M=23, use_critical_ratio=True,
                             critical_ratio_multiplier=3.75, hidden_size=512, activation="sqr", loss_func="mse",
                             optim="adam", lr=0.01, weight_decay=5e-4, n_epochs=3000, batch_size=0, eval_every=10),
    "parity_cot": dict(task="parity_cot", n_bits=20, k=6, cot=True, n_train=10000, n_samples=200000, batch_size=512,
                       n_layer=1, n_head=1, n_embd=128, lr=1e-4, eval_every_samples=None, eval_every_steps=20),
}


def training_flops(name, s, summary):
    """Matmul FLOPs of a run's training steps (forward + backward = 3 x forward); parity's 1-layer model
    counts what it computes (bench/parity_cot.labelled_forward_flops)."""
    if name == "assoc_memory":
        from assoc_memory import train_flops_per_sample
        return train_flops_per_sample(s) * summary["samples"]
    if name == "group_arithmetic":
        from group_arithmetic import flops_per_step
        return flops_per_step(summary["data_facts"]["n_train"], 23, s.hidden_size, False) * summary["steps"]
    from parity_cot import forward_flops, labelled_forward_flops
    T = s.n_bits + (s.k if s.cot else 0) + 1
    if s.n_layer == 1:  # what the task computes: the logits of the labelled positions alone
        return 3 * labelled_forward_flops(T, s.n_embd, T - s.n_bits, True) * summary["samples"]
    return 3 * forward_flops(T, s.n_embd, s.n_layer) * summary["samples"]


def one_case(name, values, replicates, workdir, threads):
    import main
    import settings
    import stacking
    from results import RunDir

    runs = [settings.build(dict(values, seed=seed, progress="off", threads=threads)) for seed in range(replicates)]
    solo_dir, stack_dir = Path(workdir) / name / "solo", Path(workdir) / name / "stack"
    shutil.rmtree(Path(workdir) / name, ignore_errors=True)
    t, cpu = time.perf_counter(), time.process_time()
    solo = [main.run(s, solo_dir / str(i)) for i, s in enumerate(runs)]
    solo_wall, solo_cpu = time.perf_counter() - t, time.process_time() - cpu
    paths = []
    for i, s in enumerate(runs):
        run = RunDir(stack_dir / str(i))
        run.path.mkdir(parents=True)
        run.write_settings(s)
        run.set_status("queued")
        paths.append(run.path)
    t, cpu = time.perf_counter(), time.process_time()
    outcome = stacking.run_folders(paths)
    stack_wall, stack_cpu = time.perf_counter() - t, time.process_time() - cpu
    worst = 0.0
    for path, summary in zip(paths, solo):
        other = RunDir(path).summary() or {}
        for key, value in summary["final"].items():
            if key not in ("elapsed", "eval_time") and isinstance(value, float):
                worst = max(worst, abs(value - other.get("final", {}).get(key, math.nan)))
    flops = sum(training_flops(name, s, summary) for s, summary in zip(runs, solo))
    return (solo_wall, solo_cpu), (stack_wall, stack_cpu), worst, flops, sorted(set(outcome.values()))


def main_():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--cases", default="assoc_memory,group_arithmetic,parity_cot")
    parser.add_argument("--parity-samples", type=int, default=200000)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every run, one by one and stacked (the runs' threads setting)")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; torch threads {args.threads}; "
          f"GPU: {'yes' if torch.cuda.is_available() else 'none (CPU only)'}")
    peak = matmul_peak(args.threads)
    print(f"fp32 matmul rate (512^3, best of batches, {args.threads} thread(s)): {peak:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.cases.split(","):
            values = dict(CASES[name])
            if name == "parity_cot":
                values["n_samples"] = args.parity_samples
                if torch.cuda.is_available() and values.get("dropout", 0.1):
                    # a GPU draws torch's dropout masks, which do not stack (stacking.refusal): without this the
                    # "stacked" figure would be one by one again
                    values["dropout"] = 0.0
                    print("parity_cot on a GPU: dropout 0 (a GPU's dropout masks do not stack)")
            (solo, solo_cpu), (stacked, stack_cpu), worst, flops, states = one_case(name, values, args.replicates,
                                                                                   workdir, args.threads)
            print(f"{name:<17} {args.replicates} replicates: one by one {solo:7.1f} s wall, {solo_cpu:7.1f} s CPU "
                  f"({flops / solo / 1e9:5.2f} GFLOP/s, {flops / solo / 1e9 / peak:6.2%} of matmul) | stacked "
                  f"{stacked:7.1f} s wall, {stack_cpu:7.1f} s CPU ({flops / stacked / 1e9:5.2f} GFLOP/s, "
                  f"{flops / stacked / 1e9 / peak:6.2%}) | speed-up {solo / stacked:4.2f}x wall, "
                  f"{solo_cpu / stack_cpu:4.2f}x CPU | largest final-metric difference {worst:.2e} | members "
                  f"{', '.join(states)} | load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main_()
