"""The machine's fp32 matmul rate, the yardstick the benchmarks state their model FLOP rates against."""
import time

import torch


def matmul_gflops(n=2048, repeats=10):
    """GFLOP/s of repeated n x n x n torch.mm (after warm-up calls) on torch's current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9
