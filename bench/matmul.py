"""The machine's matmul rate, the yardstick the benchmarks state their model FLOP rates against."""
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


def matmul_peak(threads, dtype=torch.float32, size=512, seconds=1.0):
    """GFLOP/s of a size^3 torch.mm in `dtype` on `threads` threads: the best of timed batches of 10 for
    `seconds` (the best, not the mean: the machine is shared and contention only ever slows it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 10 * 2 * size ** 3 / (time.perf_counter() - t))
    torch.set_num_threads(before)
    return best / 1e9
