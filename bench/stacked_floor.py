"""How fast a stacked step could be on this machine: a hand-written step against ours.

    python bench/stacked_floor.py [--cases group_arithmetic,assoc_memory] [--members 1,2,4,8] [--steps 1000]
                                  [--threads 1]

The issue asking for stacked runs (issue 14) expects replicates trained together to be >= 3x faster than one
by one on a CPU, on the premise that these tiny models' steps are mostly per-step overhead. This bench
measures that premise for the two overhead-bound cases of bench/stacked.py, with K members:

  group_arithmetic  Z_23, hidden 512, x^2, mse, 270 training rows, full batch, Adam lr 0.01 weight decay 5e-4
  assoc_memory      the AoT of N = 50, d = d_h = 10, H = 11 on batches of 256 contexts of 2 tokens, Adam

  floor  a step written by hand for K members at once, with nothing but the kernels it needs: no autograd
         (the gradients written out, constants folded), no vmap, no evaluation, no metrics, torch's fused
         Adam. Group arithmetic: the forward sum of W's rows as our model computes it (embedding_bag), the
         output products as the stacked model's (one bmm V h^T), the gradients as two bmm and two index_add.
         Associative memory: the K members' products as bmm (those with a narrow output computed
         transposed, which our model does not do: faster here), the attention over the 2 positions as
         broadcast products, as our model computes them; its written-out gradients are checked against
         autograd's once (the largest difference is printed). The cheapest a step of these kernels gets,
         stacked or not.
  ours   train_time / steps of main.run (one member) and of stacking.run_folders (K members), evaluated once
         at the end only.

Printed per K: milliseconds per step and per member. If stacking only removed overhead, the floor's time per
member would fall as K grows; where it does not, the kernels themselves (narrow products, element-wise
passes over K-fold tensors that leave the caches) are what a member costs, and the best stacking can do is
ours-solo / floor-per-member. A benchmark, not a test: it asserts nothing.
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

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from stacked import CASES  # noqa: E402

G, HIDDEN, N_TRAIN = 23, 512, 270
VALUES = dict(task="group_arithmetic", group_type="modular_addition", M=G, use_critical_ratio=True,
              critical_ratio_multiplier=3.75, hidden_size=HIDDEN, activation="sqr", loss_func="mse", optim="adam",
              lr=0.01, weight_decay=5e-4, batch_size=0, progress="off")


def timed(step, steps):
    """Seconds per call of step() (after 20 warm-up calls), without autograd."""
    with torch.no_grad():
        for _ in range(20):
            step()
        t = time.perf_counter()
        for _ in range(steps):
            step()
    return (time.perf_counter() - t) / steps


def group_arithmetic_floor(K, steps):
    """Seconds per step of the hand-written K-member group-arithmetic step."""
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

    return timed(step, steps)


AOT = dict(N=50, d=10, H=11, B=256, T=2)  # bench/stacked.py's associative-memory case (d_h = d)


def aot_parameters(K, g):
    N, d, H = AOT["N"], AOT["d"], AOT["H"]
    bound = 1 / math.sqrt(d)
    return dict(E=torch.randn(K, N, d, generator=g), pos=torch.randn(K, AOT["T"], d, generator=g),
                **{name: (torch.rand(K, d, H * d, generator=g) * 2 - 1) * bound for name in ("Wq", "Wk", "Wv")},
                Wo=(torch.rand(K, H * d, d, generator=g) * 2 - 1) * bound,
                U=(torch.rand(K, N, d, generator=g) * 2 - 1) * bound)


def narrow(a, b):
    """a @ b for (K, m, k) @ (K, k, n) with n small, computed as (b^T a^T)^T: MKL's bmm runs a product with a
    narrow output (d = 10 or N = 50 columns) 2-4x slower per member than the same product transposed."""
    return torch.bmm(b.transpose(1, 2), a.transpose(1, 2)).transpose(1, 2)


def aot_forward(P, rows, K):
    """The K members' AoT forward as our model computes it (attention_only.ParallelHeads): every tensor the
    hand-written backward needs, and the logits. rows: (K B T) indices into the members' stacked E rows."""
    N, d, H, B, T = AOT["N"], AOT["d"], AOT["H"], AOT["B"], AOT["T"]
    x = P["E"].reshape(K * N, d)[rows].view(K, B, T, d)
    a = x + P["pos"].unsqueeze(1)
    last = a[:, :, -1]
    q = torch.bmm(last, P["Wq"]).view(K, B, 1, H, d)
    k = torch.bmm(a.reshape(K, B * T, d), P["Wk"]).view(K, B, T, H, d)
    v = torch.bmm(a.reshape(K, B * T, d), P["Wv"]).view(K, B, T, H, d)
    p = ((q * k).sum(-1) / math.sqrt(d)).softmax(dim=2)              # (K, B, T, H)
    o = (p.unsqueeze(-1) * v).sum(2).view(K, B, H * d)
    z = x[:, :, -1] + narrow(o, P["Wo"])
    logits = torch.bmm(z, P["U"].transpose(1, 2))
    return dict(x=x, a=a, last=last, q=q, k=k, v=v, p=p, o=o, z=z), logits


def aot_gradients(P, t, logits, target, rows, K):
    """The written-out gradients of the mean cross-entropy, into P's .grad."""
    N, d, H, B, T = AOT["N"], AOT["d"], AOT["H"], AOT["B"], AOT["T"]
    gl = logits.softmax(-1)
    gl.scatter_add_(2, target.unsqueeze(-1), torch.full_like(gl[..., :1], -1.0)).div_(B)
    P["U"].grad.copy_(narrow(gl.transpose(1, 2), t["z"]))
    gz = narrow(gl, P["U"])
    P["Wo"].grad.copy_(narrow(t["o"].transpose(1, 2), gz))
    go = torch.bmm(gz, P["Wo"].transpose(1, 2)).view(K, B, 1, H, d)
    p = t["p"]
    gp = (go * t["v"]).sum(-1)
    gv = p.unsqueeze(-1) * go
    gs = (gp - (gp * p).sum(2, keepdim=True)).mul_(p).div_(math.sqrt(d))
    gq = (gs.unsqueeze(-1) * t["k"]).sum(2).view(K, B, H * d)
    gk = (gs.unsqueeze(-1) * t["q"]).view(K, B * T, H * d)
    gv = gv.view(K, B * T, H * d)
    a = t["a"].reshape(K, B * T, d)
    torch.bmm(t["last"].transpose(1, 2), gq, out=P["Wq"].grad)
    torch.bmm(a.transpose(1, 2), gk, out=P["Wk"].grad)
    torch.bmm(a.transpose(1, 2), gv, out=P["Wv"].grad)
    ga = torch.bmm(P["Wk"], gk.transpose(1, 2)).baddbmm_(P["Wv"], gv.transpose(1, 2))  # (K, d, B T): narrow
    ga = ga.transpose(1, 2).contiguous().view(K, B, T, d)
    ga[:, :, -1] += narrow(gq, P["Wq"].transpose(1, 2))
    torch.sum(ga, 1, out=P["pos"].grad)
    ga[:, :, -1] += gz
    P["E"].grad.zero_().view(K * N, d).index_add_(0, rows, ga.view(K * B * T, d))


def assoc_memory_floor(K, steps):
    """Seconds per step of the hand-written K-member associative-memory step; prints, once, the largest
    difference of its gradients from autograd's."""
    N, B, T = AOT["N"], AOT["B"], AOT["T"]
    g = torch.Generator().manual_seed(0)
    P = aot_parameters(K, g)
    rows = (torch.randint(0, N, (K, B, T), generator=g) + (torch.arange(K) * N).view(K, 1, 1)).view(-1)
    target = torch.randint(0, N, (K, B), generator=g)
    for p in P.values():
        p.grad = torch.zeros_like(p)
    if K == 1:  # the written-out gradients against autograd's
        leaves = {name: p.detach().clone().requires_grad_() for name, p in P.items()}
        logits = aot_forward(leaves, rows, K)[1]
        F.cross_entropy(logits.view(K * B, N), target.view(-1), reduction="sum").div(B).backward()
        with torch.no_grad():
            aot_gradients(P, *aot_forward(P, rows, K), target, rows, K)
        worst = max(((P[n].grad - p.grad).abs().max() / p.grad.abs().max()).item() for n, p in leaves.items())
        print(f"assoc_memory floor: its gradients against autograd's, largest difference {worst:.1e} "
              f"(relative to each gradient's largest element)")
    optimizer = torch.optim.Adam(list(P.values()), lr=1e-2, fused=True)

    def step():
        aot_gradients(P, *aot_forward(P, rows, K), target, rows, K)
        optimizer.step()

    return timed(step, steps)


FLOORS = {"group_arithmetic": group_arithmetic_floor, "assoc_memory": assoc_memory_floor}


def case_values(case, steps):
    """bench/stacked.py's settings of case, for `steps` steps evaluated once at the end."""
    if case == "group_arithmetic":
        return dict(VALUES, n_epochs=steps, eval_every=steps)
    values = dict(CASES[case], progress="off")
    epochs = max(1, steps // values["num_batch"])
    return dict(values, n_epochs=epochs, eval_every=epochs)


def ours_step_time(case, K, steps, threads, workdir):
    """train_time / steps of K members trained one by one (K = 1: main.run) or as one stack."""
    import main
    import settings
    import stacking
    from results import RunDir
    runs = [settings.build(dict(case_values(case, steps), seed=seed, threads=threads)) for seed in range(K)]
    shutil.rmtree(workdir, ignore_errors=True)
    if K == 1:
        summary = main.run(runs[0], Path(workdir) / "0")
        return summary["train_time"] / summary["steps"]
    paths = []
    for i, s in enumerate(runs):
        run = RunDir(Path(workdir) / str(i))
        run.path.mkdir(parents=True)
        run.write_settings(s)
        run.set_status("queued")
        paths.append(run.path)
    stacking.run_folders(paths)
    summary = RunDir(paths[0]).summary()
    return summary["train_time"] / summary["steps"]


def one_case(case, members, steps, threads, workdir):
    solo = ours_step_time(case, 1, steps, threads, workdir)
    print(f"{case}, ours, one run: {solo * 1e3:6.3f} ms a step", flush=True)
    for K in members:
        floor = FLOORS[case](K, steps)
        line = (f"K = {K}: floor {floor * 1e3:6.3f} ms a step, {floor / K * 1e3:6.3f} ms a member "
                f"(best stacked speed-up over ours one by one: {solo / (floor / K):4.2f}x)")
        if K > 1:
            ours = ours_step_time(case, K, steps, threads, workdir)
            line += (f" | ours stacked {ours * 1e3:6.3f} ms a step, {ours / K * 1e3:6.3f} a member "
                     f"({solo / (ours / K):4.2f}x)")
        print(line, flush=True)


def main_():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="group_arithmetic,assoc_memory")
    parser.add_argument("--members", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import training
    training.keep_freed_memory()  # as every run does: a stacked step's tensors would page-fault in otherwise
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; torch threads {args.threads}")
    with tempfile.TemporaryDirectory() as workdir:
        for case in args.cases.split(","):
            one_case(case, [int(k) for k in args.members.split(",")], args.steps, args.threads, workdir)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main_()
