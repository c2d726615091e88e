"""Datasets as tensors on the training device, served in batches without DataLoader workers.

The data of every programme is synthetic and small: it is generated once (by the task), moved to the
device once, and batches are index slices of those tensors. A full batch is the tensors themselves.
"""
import torch


def build_data(task, device):
    """The task's splits, moved to `device` once."""
    data = task.build_data()
    data.splits = {name: {k: v.to(device) for k, v in split.items()} for name, split in data.splits.items()}
    return data


class Batches:
    """Shuffled (or ordered) batches of a dict of equally long tensors.

    batch_size 0 or >= the split size gives one full batch per epoch with no copy. Shuffling draws from
    `generator` (a CPU torch.Generator seeded from the settings), so the order is reproducible and its
    state can be checkpointed.
    """

    def __init__(self, tensors, batch_size, shuffle=False, generator=None):
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))
        self.batch_size = self.n if batch_size <= 0 or batch_size >= self.n else batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return -(-self.n // self.batch_size)

    def __iter__(self):
        if self.batch_size == self.n:
            yield self.tensors
            return
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator)
            order = order.to(next(iter(self.tensors.values())).device)
            for start in range(0, self.n, self.batch_size):
                index = order[start:start + self.batch_size]
                yield {k: v[index] for k, v in self.tensors.items()}
        else:
            for start in range(0, self.n, self.batch_size):
                yield {k: v[start:start + self.batch_size] for k, v in self.tensors.items()}
