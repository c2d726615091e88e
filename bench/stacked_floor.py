"""How fast a stacked group-arithmetic step could be on this machine: a hand-written step against ours.

    python bench/stacked_floor.py [--members 1,2,4,8] [--steps 1000] [--threads 1]

The issue asking for stacked runs (issue 14) expects replicates trained together to be >= 3x faster than one
by one on a CPU, on the premise that these tiny models' steps are mostly per-step overhead. This bench
measures that premise for the group-arithmetic case of bench/stacked.py (Z_23, hidden 512, x^2, mse, 270
training rows, full batch, Adam lr 0.01 weight decay 5e-4), with K members:

  floor  a step written by hand for K members at once, with nothing but the kernels it needs: no autograd
         (the gradients written out, the constants of mse and x^2 folded into one scale), no evaluation, no
         metrics, torch's fused Adam; the forward sum of W's rows as our model computes it (embedding_bag),
         the output products as the stacked model's (one bmm V h^T), the gradients as two bmm and two
         index_add. The cheapest a step of these kernels gets, stacked or not.
  ours   train_time / steps of main.run (one member) and of stacking.run_folders (K members), evaluated once
         at the end only.

Printed per K: milliseconds per step and per member. If stacking only removed overhead, the floor's time per
member would fall as K grows; where it does not, the kernels themselves (products with 23-wide sides,
element-wise passes over K x 270 x 512 floats that leave the caches) are what a member costs, and the best
stacking can do is ours-solo / floor-per-member. A benchmark, not a test: it asserts nothing.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

G, HIDDEN, N_TRAIN = 23, 512, 270
VALUES = dict(task="group_arithmetic", group_type="modular_addition", M=G, use_critical_ratio=True,
              critical_ratio_multiplier=3.75, hidden_size=HIDDEN, activation="sqr", loss_func="mse", optim="adam",
              lr=0.01, weight_decay=5e-4, batch_size=0, progress="off")


def floor_step_time(K, steps):
    """Seconds per step of the hand-written K-member step (after 20 warm-up steps)."""
    g = torch.Generator().manual_seed(0)
    W = (torch.rand(K, 2 * G, HIDDEN, generator=g) - 0.5) * 0.4  # rows of W^T, as the model gathers them
    V = (torch.rand(K, G, HIDDEN, generator=g) - 0.5) * 0.09
    first = torch.randint(0, G, (K, N_TRAIN), generator=g)
    second = torch.randint(0, G, (K, N_TRAIN), generator=g) + G
    shift = (torch.arange(K) * 2 * G).view(K, 1)
    index = torch.stack([first + shift, second + shift], dim=2).view(K * N_TRAIN, 2)
    first_rows, second_rows = index[:, 0].contiguous(), index[:, 1].contiguous()
    target = torch.rand(K, N_TRAIN, G, generator=g)
    W.grad, V.grad = torch.zeros_like(W), torch.zeros_like(V)
    optimizer = torch.optim.Adam([W, V], lr=0.01, weight_decay=5e-4, fused=True)
    scale = 2.0 * 2.0 / (N_TRAIN * G)  # d mean-square / d out, times the 2 of d h^2 / d h

    def step():
        h = F.embedding_bag(index, W.view(K * 2 * G, HIDDEN), mode="sum").view(K, N_TRAIN, HIDDEN)
        a = h * h
        out = torch.bmm(V, a.transpose(1, 2)).transpose(1, 2)
        grad_out = (out - target).mul_(scale)                       # 2 x d loss / d out
        torch.bmm(grad_out.transpose(1, 2), a, out=V.grad).mul_(0.5)  # d loss / d V
        grad_h = torch.bmm(grad_out, V).mul_(h).view(K * N_TRAIN, HIDDEN)
        W.grad.zero_()
        flat = W.grad.view(K * 2 * G, HIDDEN)
        flat.index_add_(0, first_rows, grad_h)
        flat.index_add_(0, second_rows, grad_h)
        optimizer.step()

    with torch.no_grad():
        for _ in range(20):
            step()
        t = time.perf_counter()
        for _ in range(steps):
            step()
    return (time.perf_counter() - t) / steps


def ours_step_time(K, steps, threads, workdir):
    """train_time / steps of K members trained one by one (K = 1: main.run) or as one stack."""
    import main
    import settings
    import stacking
    from results import RunDir
    runs = [settings.build(dict(VALUES, n_epochs=steps, eval_every=steps, seed=seed, threads=threads))
            for seed in range(K)]
    shutil.rmtree(workdir, ignore_errors=True)
    if K == 1:
        return main.run(runs[0], Path(workdir) / "0")["train_time"] / steps
    paths = []
    for i, s in enumerate(runs):
        run = RunDir(Path(workdir) / str(i))
        run.path.mkdir(parents=True)
        run.write_settings(s)
        run.set_status("queued")
        paths.append(run.path)
    stacking.run_folders(paths)
    return RunDir(paths[0]).summary()["train_time"] / steps


def main_():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import training
    training.keep_freed_memory()  # as every run does: a stacked step's tensors would page-fault in otherwise
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; torch threads {args.threads}")
    with tempfile.TemporaryDirectory() as workdir:
        solo = ours_step_time(1, args.steps, args.threads, workdir)
        print(f"ours, one run:   {solo * 1e3:6.3f} ms a step")
        for K in (int(k) for k in args.members.split(",")):
            floor = floor_step_time(K, args.steps)
            line = (f"K = {K}: floor {floor * 1e3:6.3f} ms a step, {floor / K * 1e3:6.3f} ms a member "
                    f"(best stacked speed-up over ours one by one: {solo / (floor / K):4.2f}x)")
            if K > 1:
                ours = ours_step_time(K, args.steps, args.threads, workdir)
                line += f" | ours stacked {ours * 1e3:6.3f} ms a step, {ours / K * 1e3:6.3f} a member ({solo / (ours / K):4.2f}x)"
            print(line, flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main_()
