"""Training sources and evaluation batches, as tensors on the training device, without DataLoader workers.

The data of every programme is synthetic and small. A training source is one of:

* a fixed set (`FixedSet`): a dict of equally long tensors generated once by the task, moved to the
  device once, and served as shuffled index slices, epoch after epoch (a full batch is the tensors
  themselves, with no copy);
* a stream (`Stream`): a fresh batch drawn every step by the task's vectorised sampler, on the training
  device, from a generator seeded by the settings.

Both are reproducible from the seed and checkpointable (`state_dict` / `load_state_dict`): a resumed run
draws exactly the batches the uninterrupted run would have drawn. Evaluation splits are separate tensors
(possibly a subsample of the training set), served in order by `batches`.
"""
import torch

from results import ResultsError


def build_data(task, device):
    """The task's data with every tensor moved to `device` once (a split that shares the training set's
    tensors shares them on the device too)."""
    data = task.build_data()
    moved = {}

    def to_device(tensors):
        if id(tensors) not in moved:
            moved[id(tensors)] = {k: v.to(device) for k, v in tensors.items()}
        return moved[id(tensors)]

    if isinstance(data.train, dict):
        data.train = to_device(data.train)
    data.splits = {name: to_device(split) for name, split in data.splits.items()}
    return data


def size(tensors):
    return len(next(iter(tensors.values())))


def batches(tensors, batch_size):
    """The split in order, in slices of batch_size (the whole split when batch_size covers it)."""
    n = size(tensors)
    if batch_size <= 0 or batch_size >= n:
        yield tensors
        return
    for start in range(0, n, batch_size):
        yield {k: v[start:start + batch_size] for k, v in tensors.items()}


def fixed_batch_size(n, batch_size):
    """The batch a fixed set of n examples is served in: batch_size, or all n (0, or at least n: full batch)."""
    return n if batch_size <= 0 or batch_size >= n else batch_size


class FixedSet:
    """Shuffled batches of a fixed training set, one epoch after another.

    Each epoch draws one permutation from `generator` (a CPU torch.Generator seeded from the settings);
    the last batch of an epoch holds the remainder. batch_size 0 or >= the set's size gives one full
    batch per epoch, the tensors themselves, and draws nothing.
    """

    def __init__(self, tensors, batch_size, generator):
        self.tensors = tensors
        self.n = size(tensors)
        self.batch_size = fixed_batch_size(self.n, batch_size)
        self.steps_per_epoch = -(-self.n // self.batch_size)
        self.generator = generator
        self.order = None  # this epoch's permutation (on the device)
        self.position = 0  # examples of this epoch already served

    @property
    def full_batch(self):
        return self.batch_size == self.n

    def next(self):
        """(batch, number of examples in it)."""
        if self.full_batch:
            return self.tensors, self.n
        if self.position == 0:
            order = torch.randperm(self.n, generator=self.generator)
            self.order = order.to(next(iter(self.tensors.values())).device)
        index = self.order[self.position:self.position + self.batch_size]
        self.position += len(index)
        if self.position >= self.n:
            self.position = 0
        return {k: v[index] for k, v in self.tensors.items()}, len(index)

    def state_dict(self):
        return {"generator": self.generator.get_state(), "position": self.position,
                "order": None if self.order is None or self.position == 0 else self.order.cpu()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"].cpu())  # (a checkpoint loaded onto a GPU holds it there)
        self.position = state["position"]
        if state["order"] is not None:
            self.order = state["order"].to(next(iter(self.tensors.values())).device)


class Stream:
    """A fresh batch every step: `sample(count, generator)` returns a dict of tensors on the generator's
    device, drawn only from that generator (vectorised: no Python loop per sample). With a budget of
    samples, the last batch holds what is left of it (10^7 in batches of 512: 19,531 of 512 and one of 128,
    as the parity original trains), so that a run trains its budget exactly."""

    steps_per_epoch = None

    def __init__(self, sample, batch_size, generator, budget=None):
        if batch_size <= 0:
            raise ValueError("a stream needs batch_size > 0: it has no whole set to take as one batch")
        self.sample = sample
        self.batch_size = batch_size
        self.generator = generator
        self.budget, self.drawn = budget, 0

    def next(self):
        size = self.batch_size if self.budget is None else min(self.batch_size, self.budget - self.drawn)
        self.drawn += size
        return self.sample(size, self.generator), size

    def state_dict(self):
        state = {"generator": self.generator.get_state(), "drawn": self.drawn, "device": self.generator.device.type}
        if hasattr(self.sample, "state_dict"):  # a sampler that keeps a state of its own (parity's distinct inputs)
            state["sample"] = self.sample.state_dict()
        return state

    def load_state_dict(self, state):
        saved = state.get("device", self.generator.device.type)
        if saved != self.generator.device.type:  # a CPU generator's state and a GPU's are not the same thing
            raise ResultsError(f"this run's training samples were drawn by a {saved} generator, whose state cannot "
                               f"go on on {self.generator.device.type}: resume it where it trained (set device = "
                               f"'{'cpu' if saved == 'cpu' else 'cuda'}'), or delete its checkpoint.pt to train it "
                               "again from the start")
        self.generator.set_state(state["generator"].cpu())  # a generator's state is a CPU tensor, for CUDA too
        if "drawn" in state:
            self.drawn = state["drawn"]
        else:  # a checkpoint written before budgets were exact: the run goes on as it began, whole batches
            self.budget = None
        if "sample" in state:
            self.sample.load_state_dict(state["sample"])


def make_source(train, batch_size, seed, device, budget=None):
    """A FixedSet for a dict of tensors, a Stream for a sampler. The fixed set's shuffling generator lives
    on the CPU (the order is the same on every device); a stream's on the training device, where its
    batches are drawn."""
    if isinstance(train, dict):
        return FixedSet(train, batch_size, torch.Generator().manual_seed(seed))
    return Stream(train, batch_size, torch.Generator(device=device).manual_seed(seed), budget)
