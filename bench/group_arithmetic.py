"""Group arithmetic throughput: our loop (main.run) against a plain PyTorch loop, on the same machine and data.

    python bench/group_arithmetic.py [--M 97] [--hidden 512] [--steps 300] [--job-epochs 2000] [--threads N]

Prints, all measured in this one process:
  * the machine's fp32 matmul rate (a 2048^3 torch.mm), the scale for everything else;
  * training steps/s (full batch, Adam lr 0.01 wd 1e-4, x^2, mse; test_size 0.7, so 30% of the M^2 table
    trains) of
      - plain:  a loop written here that multiplies concatenated one-hot vectors by W, as the paper's model is
                written down (no evaluation),
      - ours:   main.run with eval only after the last step,
    each with the GFLOP/s of the matmuls it performs and that rate's fraction of the machine's matmul rate;
  * the job "M=97, hidden 512, test_size 0.7, 2000 epochs, an evaluation of both splits every epoch", start to
    summary: ours through main.run (summary wall_time, which includes data, model and every evaluation), and the
    plain loop doing the same evaluations.
A benchmark, not a test: it asserts nothing about time. The load average is printed before and after, since a
shared machine's figures mean little without it.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from matmul import matmul_gflops  # noqa: E402


def flops_per_step(n, M, H, onehot_matmul):
    """Matmul FLOPs of one training step of act(W [onehots]) -> V: V forward, V's gradient and the hidden
    gradient (3 x 2nHM), plus, where W really multiplies the one-hots, its forward and weight gradient
    (2 x 2n(2M)H). Our model picks W's columns instead, which costs no matmul."""
    return 3 * 2 * n * H * M + (2 * 2 * n * (2 * M) * H if onehot_matmul else 0)


def split(M, test_size, seed):
    a, b = torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
    x, y = torch.stack([a.reshape(-1), b.reshape(-1)], 1), ((a + b) % M).reshape(-1)
    order = torch.randperm(M * M, generator=torch.Generator().manual_seed(seed))
    n_train = round((1 - test_size) * M * M)
    return (x[order[:n_train]], y[order[:n_train]]), (x[order[n_train:]], y[order[n_train:]])


def plain_loop(M, H, test_size, epochs, evaluate_every_epoch, seed=1):
    """The paper's network as written: concatenated one-hots times W, x^2, V; mse on centred targets; Adam."""
    torch.manual_seed(seed)
    (xtr, ytr), (xte, yte) = split(M, test_size, seed)

    def onehots(x):
        return torch.cat([F.one_hot(x[:, 0], M), F.one_hot(x[:, 1], M)], 1).float()
    Xtr, Xte = onehots(xtr), onehots(xte)
    Ttr, Tte = F.one_hot(ytr, M).float() - 1 / M, F.one_hot(yte, M).float() - 1 / M
    W = torch.nn.Linear(2 * M, H, bias=False)
    V = torch.nn.Linear(H, M, bias=False)
    opt = torch.optim.Adam([*W.parameters(), *V.parameters()], lr=0.01, weight_decay=1e-4)

    def mse(out, target):
        return (out - out.mean(1, keepdim=True) - target).square().sum(1).mean()
    t = time.perf_counter()
    for _ in range(epochs):
        loss = mse(V(W(Xtr).square()), Ttr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if evaluate_every_epoch:
            with torch.inference_mode():
                for X, T, y in ((Xtr, Ttr, ytr), (Xte, Tte, yte)):
                    out = V(W(X).square())
                    _ = (mse(out, T).item(), (out.argmax(1) == y).float().mean().item())
    return time.perf_counter() - t, len(xtr)


def ours(M, H, test_size, epochs, eval_every, seed=1):
    import main
    import settings
    s = settings.build(dict(task="group_arithmetic", M=M, hidden_size=H, test_size=test_size, n_epochs=epochs,
                            eval_every=eval_every, optim="adam", lr=0.01, weight_decay=1e-4, loss_func="mse",
                            activation="sqr", seed=seed, progress="off",
                            threads=torch.get_num_threads()))  # the plain loop's threads (a run sets its own)
    with tempfile.TemporaryDirectory() as tmp:
        summary = main.run(s, Path(tmp) / "run")
    return summary


def main_():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--M", type=int, default=97)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--test-size", type=float, default=0.7)
    p.add_argument("--steps", type=int, default=300, help="training steps timed for steps/s")
    p.add_argument("--job-epochs", type=int, default=2000, help="epochs of the evaluate-every-epoch job (0: skip)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    M, H = args.M, args.hidden
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus")
    peak = matmul_gflops()
    print(f"fp32 matmul (2048^3 torch.mm): {peak:.1f} GFLOP/s")

    plain_time, n_train = plain_loop(M, H, args.test_size, args.steps, evaluate_every_epoch=False)
    summary = ours(M, H, args.test_size, args.steps, eval_every=args.steps)
    print(f"\ntraining steps/s, M={M}, hidden {H}, {n_train} training rows, full batch Adam, {args.steps} steps "
          "(GFLOP/s of the matmuls each loop really performs):")
    for name, seconds, onehot in (("plain one-hot loop", plain_time, True),
                                  ("ours (main.run train_time)", summary["train_time"], False)):
        rate, flops = args.steps / seconds, flops_per_step(n_train, M, H, onehot)
        print(f"  {name:<28} {rate:8.1f} steps/s   {flops / 1e9:.2f} GFLOP a step   {rate * flops / 1e9:7.1f} "
              f"GFLOP/s   {rate * flops / 1e9 / peak:6.1%} of matmul")

    if args.job_epochs:
        print(f"\njob: M={M}, hidden {H}, test_size {args.test_size}, {args.job_epochs} epochs, evaluation of both "
              "splits every epoch:")
        t = time.perf_counter()
        summary = ours(M, H, args.test_size, args.job_epochs, eval_every=1)
        outer = time.perf_counter() - t
        print(f"  ours: wall {summary['wall_time']:.1f}s start to summary (train {summary['train_time']:.1f}s, "
              f"eval {summary['eval_time']:.1f}s, data {summary['data_time']:.2f}s; {outer:.1f}s around main.run); "
              f"final test accuracy {summary['final']['test_accuracy']:.4f}")
        plain_time, _ = plain_loop(M, H, args.test_size, args.job_epochs, evaluate_every_epoch=True)
        print(f"  plain one-hot loop, same evaluations: {plain_time:.1f}s")
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main_()
