"""Ground-truth functions func1..func22 of the target-functions programme and their data generators.

Specification: reference/target_functions.md. A batch of strings is an integer numpy array of shape
[n, L]: bits 0/1 for binary tasks ('bin'), digits 0..9 with a nonzero first digit for decimal ones
('dec'). Every function returns a bool array of shape [n] (label 1 iff the condition holds).

Public API
----------
FUNCTIONS: dict[str, FunctionSpec]      the registry (func5 is absent, as in the original programme)
get(name) -> FunctionSpec               raises UnknownFunction (a ValueError) with close names
FunctionSpec(x, positions=None)         validate a batch and label it; see FunctionSpec for the fields
fixed_positions(L, k, seed=42)          the k fixed positions of func15 (k=3) / func18 (k=10)
original_positions(L, k, seed=42)       the original code's positions (torch's randperm, seeded 42)
make_split(name, L, train_size, test_size, seed, *, positions=None) -> Split
data_seed(name, L, train_size, test_size, seed) -> int
encode(x, alphabet), vocab_size(alphabet), BOS, as_text(row)
GENERATOR_VERSION, DataError, UnknownFunction

The module-level functions func1..func22 are the raw, unvalidated labelling functions (fast path).
func15/func18 take (x, positions); the others take (x). Calling a FunctionSpec fills in the positions,
checks the batch and L, and is the way other code should label strings.

Randomness: nothing here touches a global RNG (random, numpy.random, torch). Data comes from a
numpy Generator(PCG64) seeded with data_seed(...); fixed positions come from a pure-Python SplitMix64
(or, on request, from a private torch.Generator: original_positions).
"""
from __future__ import annotations

import difflib
import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
import sympy
import torch

GENERATOR_VERSION = 1  # bump whenever generated data would change; part of every cache key
POSITIONS_SEED = 42  # the original's seed for the fixed positions of func15/func18
BOS = {"bin": 2, "dec": 10}  # BOS token id per alphabet: symbols are 0..BOS-1, vocabulary BOS+1
BOS_BIN, BOS_DEC = BOS["bin"], BOS["dec"]
ALPHABETS = tuple(BOS)

# Give up when a class still lacks examples after drawing this many times the pool size (plus a floor,
# so that a tiny pool does not give up on a class that is merely uncommon).
MAX_DRAW_FACTOR = 200
MIN_DRAW_BUDGET = 2000
_ELEMENTS_PER_CHUNK = 1 << 22  # candidate strings are drawn in chunks of at most ~4M symbols


class DataError(ValueError):
    """An impossible request (length, sizes, too-rare class); the message says why and what would work."""


class UnknownFunction(ValueError):
    """A function name that is not in the registry; the message suggests the closest names."""


# ----------------------------------------------------------------------------- the functions

def _parity(bits: np.ndarray) -> np.ndarray:
    return (bits.sum(axis=1) & 1).astype(bool)


def func1(x):
    """Parity of the first floor(L/2) bits."""
    return _parity(x[:, : x.shape[1] // 2])


def func2(x):
    """The maximum number of ones over all windows of width floor(L/2) is odd."""
    L = x.shape[1]
    w = L // 2
    c = np.zeros((x.shape[0], L + 1), dtype=np.int64)
    np.cumsum(x, axis=1, out=c[:, 1:])
    counts = c[:, w:] - c[:, : L - w + 1]  # ones in the window starting at each of the L-w+1 offsets
    return (counts.max(axis=1) & 1).astype(bool)


def func3(x):
    """XOR of one Rule-30 step on x padded with a 0 each side: y_i = x_{i-1} XOR (x_i OR x_{i+1})."""
    p = np.pad(np.asarray(x, dtype=np.uint8), ((0, 0), (1, 1)))
    y = p[:, :-2] ^ (p[:, 1:-1] | p[:, 2:])
    return _parity(y)


def func4(x):
    """SHA-256 of the ASCII bit string ('0110...') has an odd number of one bits."""
    n, L = x.shape
    text = (np.asarray(x, dtype=np.uint8) + ord("0")).tobytes()
    digests = b"".join(hashlib.sha256(text[i * L:(i + 1) * L]).digest() for i in range(n))
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(n, 32), axis=1)
    return _parity(bits)


def func6(x):
    """Parity of the even-index bits x_0, x_2, ..."""
    return _parity(x[:, 0::2])


def func7(x):
    """Parity of all bits."""
    return _parity(x)


def func8(x):
    """Same as func6 (a duplicate in the original programme)."""
    return func6(x)


def func9(x):
    """Parity of the odd-index bits x_1, x_3, ..."""
    return _parity(x[:, 1::2])


def func10(x):
    """x_0."""
    return x[:, 0].astype(bool)


def func11(x):
    """x_{L-1}."""
    return x[:, -1].astype(bool)


def func12(x):
    """x_{floor(L/2)}."""
    return x[:, x.shape[1] // 2].astype(bool)


def func13(x):
    """x_0 != x_{L-1}."""
    return x[:, 0] != x[:, -1]


def func14(x):
    """x_0 == x_{L-1}."""
    return x[:, 0] == x[:, -1]


def func15(x, positions=None):
    """Parity of x at 3 fixed positions (default: fixed_positions(L, 3))."""
    if positions is None:
        positions = fixed_positions(x.shape[1], 3)
    return _parity(x[:, list(positions)])


def func16(x):
    """Dyck-2: bit pairs 00='(' 01=')' 10='[' 11=']' form a balanced, correctly nested word.

    Stack-free and vectorised: the depth walk must stay >= 0 and end at 0; then, sorting the symbols
    by (nesting level, position) puts every opening bracket right before its partner, so the word is
    correctly nested iff each such pair has one type.
    """
    n, L = x.shape
    if L % 2:
        raise ValueError(f"func16 reads bits in pairs: L must be even, got L={L}")
    kind = np.asarray(x[:, 0::2], dtype=np.int64)  # 0: round, 1: square
    closing = np.asarray(x[:, 1::2], dtype=np.int64)
    m = kind.shape[1]
    if m == 0:
        return np.ones(n, dtype=bool)
    step = 1 - 2 * closing
    depth_after = np.cumsum(step, axis=1)
    ok = (depth_after.min(axis=1) >= 0) & (depth_after[:, -1] == 0)
    level = np.where(closing == 1, depth_after, depth_after - step)  # a pair shares its level
    if m % 2:  # an odd number of brackets never balances
        return np.zeros(n, dtype=bool)
    order = np.argsort(level * m + np.arange(m), axis=1)
    kinds = np.take_along_axis(kind, order, axis=1)
    return ok & (kinds[:, 0::2] == kinds[:, 1::2]).all(axis=1)


def func17(x):
    """Palindrome: x equals its reverse."""
    return (x == x[:, ::-1]).all(axis=1)


def func18(x, positions=None):
    """Parity of x at 10 fixed positions (default: fixed_positions(L, 10))."""
    if positions is None:
        positions = fixed_positions(x.shape[1], 10)
    return _parity(x[:, list(positions)])


def func19(x):
    """The L-digit decimal integer is prime (sympy.isprime on Python ints)."""
    return np.fromiter((sympy.isprime(v) for v in _rows_to_ints(x)), dtype=bool, count=x.shape[0])


def _contains(x, pattern: str) -> np.ndarray:
    """Whether each row contains the bit string `pattern` (windows packed into integers)."""
    n, L = x.shape
    k = len(pattern)
    if L < k:
        return np.zeros(n, dtype=bool)
    packed = np.zeros((n, L - k + 1), dtype=np.int64)
    for j in range(k):
        packed = (packed << 1) | x[:, j: L - k + 1 + j]
    return (packed == int(pattern, 2)).any(axis=1)


PATTERN20 = "10101010"
PATTERN21 = "00111111"


def func20(x):
    """Contains the substring 10101010."""
    return _contains(x, PATTERN20)


def func21(x):
    """Contains the substring 00111111."""
    return _contains(x, PATTERN21)


def func22(x):
    """Prime, the same label as func19 (only the generator differs: composites end in 1, 3, 7 or 9)."""
    return func19(x)


def __getattr__(name):  # module attribute access: explain the gap instead of a bare AttributeError
    if name == "func5":
        raise AttributeError(_FUNC5_MESSAGE)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_FUNC5_MESSAGE = ("func5 does not exist in the original programme (its numbering skips it: func4 is "
                  "followed by func6); it is deliberately not invented here")


# ----------------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class FunctionSpec:
    """One ground-truth function and what it needs.

    fn: the raw function, called as fn(x) or, when n_positions > 0, as fn(x, positions).
    alphabet: 'bin' or 'dec'. min_length: the smallest L for which both labels occur (and the
    generator works). length_multiple: L must be a multiple of it (4 for Dyck-2). generator: which
    data generator make_split uses. pattern: the 8-bit pattern of func20/func21.
    """
    name: str
    fn: Callable
    alphabet: str
    description: str
    min_length: int
    length_reason: str = ""
    length_multiple: int = 1
    n_positions: int = 0
    generator: str = "uniform"
    pattern: str | None = None

    def length_error(self, L) -> str | None:
        """None when L suits this function, else a message that says why not and what would work."""
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)):
            return f"L must be an integer, got {L!r}"
        L = int(L)
        if L < self.min_length:
            why = f" ({self.length_reason})" if self.length_reason else ""
            return f"{self.name} ({self.description}) needs L >= {self.min_length}{why}; got L={L}"
        if L % self.length_multiple:
            q = self.length_multiple
            lower, upper = L - L % q, L - L % q + q
            nearest = f"L={lower} or L={upper}" if lower >= self.min_length else f"L={upper}"
            return (f"{self.name} ({self.description}) needs L divisible by {q}"
                    f"{f' ({self.length_reason})' if self.length_reason else ''}; got L={L}; try {nearest}")
        return None

    def positions(self, L: int, seed: int = POSITIONS_SEED, rule: str = "portable") -> tuple[int, ...] | None:
        """The fixed positions this function reads at length L (None when it has none); rule 'portable'
        (fixed_positions, the default) or 'original' (original_positions: the original code's sets)."""
        if rule not in POSITION_RULES:
            raise ValueError(f"positions rule {rule!r} must be one of {', '.join(POSITION_RULES)}")
        return POSITION_RULES[rule](L, self.n_positions, seed) if self.n_positions else None

    def __call__(self, x, positions=None) -> np.ndarray:
        """Label a batch [n, L] (numpy or torch), after checking its shape, symbols and length."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{self.name} expects a batch of strings of shape [n, L], got shape {x.shape}")
        if x.size and not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{self.name} expects integer symbols, got dtype {x.dtype}")
        top = BOS[self.alphabet] - 1
        if x.size and (x.min() < 0 or x.max() > top):
            raise ValueError(f"{self.name} works on the {self.alphabet!r} alphabet: "
                             f"symbols must be in 0..{top}")
        error = self.length_error(x.shape[1])
        if error:
            raise DataError(error)
        if not self.n_positions:
            if positions is not None:
                raise ValueError(f"{self.name} reads no fixed positions; do not pass any")
            return self.fn(x)
        positions = self.positions(x.shape[1]) if positions is None else _check_positions(
            self, x.shape[1], positions)
        return self.fn(x, positions)


def _check_positions(spec: FunctionSpec, L: int, positions) -> tuple[int, ...]:
    positions = tuple(int(p) for p in positions)
    if len(positions) != spec.n_positions or len(set(positions)) != len(positions) \
            or any(not 0 <= p < L for p in positions):
        raise DataError(f"{spec.name} needs {spec.n_positions} distinct positions in 0..{L - 1}, "
                        f"got {positions}")
    return tuple(sorted(positions))


def _registry() -> dict[str, FunctionSpec]:
    bits8 = "the pattern has 8 bits"
    prime = "composites are products of a floor(L/2)- and a ceil(L/2)-digit number"
    specs = [
        FunctionSpec("func1", func1, "bin", "parity of the first floor(L/2) bits", 2),
        FunctionSpec("func2", func2, "bin", "max count of ones over windows of width floor(L/2) is odd", 2),
        FunctionSpec("func3", func3, "bin", "XOR of one Rule-30 step (zero padding)", 1),
        FunctionSpec("func4", func4, "bin", "SHA-256 of the ASCII bit string has odd popcount", 1),
        FunctionSpec("func6", func6, "bin", "parity of the even-index bits", 1),
        FunctionSpec("func7", func7, "bin", "parity of all bits", 1),
        FunctionSpec("func8", func8, "bin", "parity of the even-index bits (duplicate of func6)", 1),
        FunctionSpec("func9", func9, "bin", "parity of the odd-index bits", 2),
        FunctionSpec("func10", func10, "bin", "first bit x_0", 1),
        FunctionSpec("func11", func11, "bin", "last bit x_{L-1}", 1),
        FunctionSpec("func12", func12, "bin", "middle bit x_{floor(L/2)}", 1),
        FunctionSpec("func13", func13, "bin", "first bit differs from last bit", 2),
        FunctionSpec("func14", func14, "bin", "first bit equals last bit", 2),
        FunctionSpec("func15", func15, "bin", "parity of 3 fixed positions", 3,
                     "it reads 3 distinct positions", n_positions=3),
        FunctionSpec("func16", func16, "bin", "Dyck-2 word over bit pairs 00=( 01=) 10=[ 11=]", 4,
                     "two bits per bracket and an even number of brackets", length_multiple=4,
                     generator="dyck2"),
        FunctionSpec("func17", func17, "bin", "palindrome", 2, "every 1-bit string is a palindrome",
                     generator="palindrome"),
        FunctionSpec("func18", func18, "bin", "parity of 10 fixed positions", 10,
                     "it reads 10 distinct positions", n_positions=10),
        FunctionSpec("func19", func19, "dec", "the L-digit number is prime", 2, prime, generator="prime"),
        FunctionSpec("func20", func20, "bin", f"contains {PATTERN20}", 8, bits8, generator="pattern",
                     pattern=PATTERN20),
        FunctionSpec("func21", func21, "bin", f"contains {PATTERN21}", 8, bits8, generator="pattern",
                     pattern=PATTERN21),
        FunctionSpec("func22", func22, "dec", "the L-digit number is prime (composites end in 1/3/7/9)",
                     2, prime, generator="prime_1379"),
    ]
    return {s.name: s for s in specs}


FUNCTIONS: dict[str, FunctionSpec] = _registry()


def get(name: str) -> FunctionSpec:
    """The spec of a function by name; UnknownFunction (a ValueError) names the closest valid ones."""
    if isinstance(name, str) and name.strip() in FUNCTIONS:
        return FUNCTIONS[name.strip()]
    valid = ", ".join(FUNCTIONS)
    if isinstance(name, str) and name.strip().lower() == "func5":
        raise UnknownFunction(f"{_FUNC5_MESSAGE}. Valid names: {valid}")
    close = difflib.get_close_matches(str(name).strip().lower(), list(FUNCTIONS), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownFunction(f"unknown target function {name!r}; {hint}Valid names: {valid}")


# ----------------------------------------------------------------------------- fixed positions

_MASK64 = (1 << 64) - 1


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64 (Steele, Lea, Flood 2014): (new state, 64-bit output)."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


@lru_cache(maxsize=None)
def fixed_positions(L: int, k: int, seed: int = POSITIONS_SEED) -> tuple[int, ...]:
    """The first k entries of a seeded random permutation of range(L), sorted.

    A pure function of (L, k, seed): a partial Fisher-Yates shuffle driven by a SplitMix64 stream
    written here in pure Python and seeded from SHA-256 of (seed, L), so it depends on no library's
    RNG algorithm and never touches a global RNG. The first k entries of one permutation mean that
    the 3 positions of func15 are among the 10 of func18 at the same L, as in the original.

    These are NOT the original's sets. The original's func15/func18 called torch.manual_seed(42) (reseeding
    torch's global CPU generator at every call) and read torch.randperm(L)[:k]: e.g. S3(100) = {42, 62, 96}
    there. original_positions gives those sets without touching the global generator; make_split records
    the positions it used in the split's facts, so a run is reproducible from its metadata either way.
    """
    L, k, seed = _position_arguments("fixed_positions", L, k, seed)
    state = int.from_bytes(hashlib.sha256(f"fixed_positions:{seed}:{L}".encode()).digest()[:8], "big")
    perm = list(range(L))
    for i in range(k):
        bound = L - i
        limit = (1 << 64) - (1 << 64) % bound  # reject the top sliver so that j is exactly uniform
        while True:
            state, z = _splitmix64(state)
            if z < limit:
                break
        j = i + z % bound
        perm[i], perm[j] = perm[j], perm[i]
    return tuple(sorted(perm[:k]))


def _position_arguments(name, L, k, seed):
    """(L, k, seed) as ints for name(L, k, seed), or the error that names the wrong one."""
    for label, value in (("L", L), ("k", k), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: {label} must be an integer, got {value!r}")
    L, k, seed = int(L), int(k), int(seed)
    if not 1 <= k <= L:
        raise DataError(f"{name}: need 1 <= k <= L to choose k distinct positions, got k={k}, L={L}")
    return L, k, seed


@lru_cache(maxsize=None)
def original_positions(L: int, k: int, seed: int = POSITIONS_SEED) -> tuple[int, ...]:
    """The positions the original code read: the first k entries of torch.randperm(L) drawn right after
    torch.manual_seed(seed) (seed 42 there), sorted (the order does not change a parity).

    The same draw from a private CPU torch.Generator seeded the same way, so the global RNG is left
    alone (the original reseeded it at every call). Unlike fixed_positions this depends on torch's
    randperm algorithm: a torch release that changed it would change these sets (the original's
    published ones, S3(100) = {42, 62, 96}, S3(20) = {2, 14, 18}, are checked by the tests).
    """
    L, k, seed = _position_arguments("original_positions", L, k, seed)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return tuple(sorted(torch.randperm(L, generator=generator)[:k].tolist()))


POSITION_RULES = {"portable": fixed_positions, "original": original_positions}


# ----------------------------------------------------------------------------- encoding

def vocab_size(alphabet: str) -> int:
    """Token vocabulary of an alphabet: its symbols plus BOS (3 for 'bin', 11 for 'dec')."""
    return _bos(alphabet) + 1


def _bos(alphabet: str) -> int:
    if alphabet not in BOS:
        raise ValueError(f"unknown alphabet {alphabet!r}; valid: {', '.join(ALPHABETS)}")
    return BOS[alphabet]


def encode(x, alphabet: str) -> torch.Tensor:
    """[n, L] symbols (numpy or torch) -> LongTensor [n, L+1] with BOS prepended."""
    bos = _bos(alphabet)
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.long)
    if x.ndim != 2:
        raise ValueError(f"encode expects a batch of shape [n, L], got {tuple(x.shape)}")
    return torch.cat([torch.full((x.shape[0], 1), bos, dtype=torch.long), x], dim=1)


def as_text(x_row) -> str:
    """One string as space-separated digits ('0 1 1 0'), the form a pretrained tokenizer reads."""
    if isinstance(x_row, torch.Tensor):
        x_row = x_row.detach().cpu().numpy()
    row = np.asarray(x_row)
    if row.ndim != 1:
        raise ValueError(f"as_text expects one string (a 1-D row), got shape {row.shape}")
    return " ".join(str(int(d)) for d in row)


# ----------------------------------------------------------------------------- decimal helpers

def _rows_to_ints(x) -> list[int]:
    n, L = x.shape
    text = (np.asarray(x, dtype=np.uint8) + ord("0")).tobytes()
    return [int(text[i * L:(i + 1) * L]) for i in range(n)]


def _ints_to_rows(values: list[int], L: int) -> np.ndarray:
    text = "".join(map(str, values)).encode()
    if len(text) != len(values) * L:
        raise AssertionError("internal: every number must have exactly L digits")
    return (np.frombuffer(text, dtype=np.uint8) - ord("0")).reshape(len(values), L)


def _uniform_digits(rng: np.random.Generator, m: int, L: int) -> np.ndarray:
    """m uniform L-digit numbers as digit rows (first digit 1..9)."""
    d = rng.integers(0, 10, size=(m, L), dtype=np.uint8)
    d[:, 0] = rng.integers(1, 10, size=m, dtype=np.uint8)
    return d


_SIEVE_BOUND = 1 << 15

try:  # optional: GMP's powmod is ~20x faster than CPython's pow at 100 digits; results are identical
    from gmpy2 import powmod as _powmod
except ImportError:  # pragma: no cover - depends on the environment
    _powmod = pow


@lru_cache(maxsize=None)
def _small_primes(bound: int) -> np.ndarray:
    is_p = np.ones(bound, dtype=bool)
    is_p[:2] = False
    for p in range(2, math.isqrt(bound - 1) + 1):
        if is_p[p]:
            is_p[p * p::p] = False
    return np.flatnonzero(is_p)


def _residues(digits: np.ndarray, primes: np.ndarray) -> np.ndarray:
    """[m, P] remainders of the numbers written in `digits` modulo each prime (Horner, 18 digits a step)."""
    m, L = digits.shape
    p = primes.astype(np.int64)[None, :]
    r = np.zeros((m, len(primes)), dtype=np.int64)
    start = 0
    # 18-digit chunks fit int64; r < p <= 2**20 keeps r * (10**w mod p) + (chunk mod p) below 2**41
    for width in [L % 18] * (L % 18 > 0) + [18] * (L // 18):
        chunk = digits[:, start:start + width].astype(np.int64) @ (10 ** np.arange(width - 1, -1, -1))
        start += width
        r = (r * (pow(10, width) % p) + (chunk[:, None] % p)) % p
    return r


def _next_primes(digits: np.ndarray) -> list[int]:
    """For each start s (an L-digit row), the smallest prime > s, as sympy.nextprime(s) gives.

    sympy.nextprime costs ~5 ms at 100 digits; here a window of candidates after each start is sieved
    by small primes across the whole batch at once, and the survivors are tried in order with a
    base-2 Fermat test (exact below 2**64 via sympy.isprime). A base-2 pseudoprime could slip through
    above 2**64 (vanishingly rare for random numbers); make_split's label recomputation with
    sympy.isprime then drops that example, so no label can be wrong.
    """
    m, L = digits.shape
    starts = _rows_to_ints(digits)
    # Primes below 10**(L-1) divide a candidate (> 10**(L-1)) only if the candidate is composite.
    primes = _small_primes(int(min(_SIEVE_BOUND, 10 ** (L - 1))))
    width = int(6.5 * L * math.log(10)) + 64  # no prime in the window: probability ~ e^-6.5, fallback
    small = primes[primes < width]
    out = []
    for lo in range(0, m, 512):
        block = digits[lo:lo + 512]
        b = len(block)
        # candidate k is s + 1 + k; p divides it iff k = (p - 1 - s mod p) mod p
        first = (primes[None, :] - 1 - _residues(block, primes)) % primes[None, :]
        composite = np.zeros((b, width), dtype=bool)
        for i, p in enumerate(small):
            cols = first[:, i: i + 1] + p * np.arange(-(-width // int(p)))[None, :]
            rows = np.broadcast_to(np.arange(b)[:, None], cols.shape)
            keep = cols < width
            composite[rows[keep], cols[keep]] = True
        fl = first[:, len(small):]
        rows, which = np.nonzero(fl < width)
        composite[rows, fl[rows, which]] = True
        for i in range(b):
            s = starts[lo + i]
            for k in np.flatnonzero(~composite[i]).tolist():
                c = s + 1 + k
                if (sympy.isprime(c) if c < (1 << 64) else _powmod(2, c - 1, c) == 1):
                    out.append(c)
                    break
            else:
                out.append(int(sympy.nextprime(s + width)))
    return out


# ----------------------------------------------------------------------------- generators
# Each generator is a proposal: propose(m) -> up to m candidate rows, uint8 [<=m, L]. _collect keeps
# the candidates whose *recomputed* label is the wanted one, so a proposal only steers the
# distribution: it can never make a label wrong.

def _collect(spec: FunctionSpec, L: int, label: Callable, propose: Callable, need: dict[bool, int],
             first_chunk: int | None = None):
    """Draw from `propose` until there are need[True] positives and need[False] negatives.

    Raises DataError, naming the function, L and the observed rate, once a class is clearly too rare
    to fill within ~MAX_DRAW_FACTOR times the pool.
    """
    got = {c: [] for c in need}
    count = {c: 0 for c in need}
    pool = sum(need.values())
    budget = MAX_DRAW_FACTOR * pool + MIN_DRAW_BUDGET
    cap = max(64, _ELEMENTS_PER_CHUNK // max(L, 1))
    drawn = 0
    m = min(cap, first_chunk or int(1.1 * pool) + 64)
    while True:
        cand = propose(m)
        drawn += m
        y = label(cand)
        for c in need:
            if count[c] < need[c]:
                rows = cand[y == c][: need[c] - count[c]]
                got[c].append(rows)
                count[c] += len(rows)
        short = [c for c in need if count[c] < need[c]]
        if not short:
            break
        rate = {c: count[c] / drawn for c in short}
        projected = max(need[c] / rate[c] if rate[c] else math.inf for c in short)
        if drawn >= budget or (drawn >= budget / 20 and projected > budget):
            c = min(short, key=lambda c: rate[c])
            kind = "positive" if c else "negative"
            raise DataError(
                f"{spec.name} ({spec.description}) at L={L}: {kind} examples are too rare for the "
                f"generator: {count[c]} of {drawn} candidates ({rate[c]:.3%}), but {need[c]} are needed "
                f"(half the pool); gave up rather than draw more than ~{MAX_DRAW_FACTOR}x that many. Choose "
                f"another L (or a smaller pool).")
        remaining = max((need[c] - count[c]) / max(rate[c], 1 / drawn) for c in short)
        m = int(min(cap, max(16, 1.2 * remaining + 16), max(1, budget - drawn)))
    return {c: np.concatenate(got[c])[: need[c]] for c in need}


def _uniform_bits(rng, L):
    return lambda m: rng.integers(0, 2, size=(m, L), dtype=np.uint8)


def _with_pattern(rng, L, pattern):
    bits = np.frombuffer(pattern.encode(), dtype=np.uint8) - ord("0")

    def propose(m):
        x = rng.integers(0, 2, size=(m, L), dtype=np.uint8)
        at = rng.integers(0, L - len(bits) + 1, size=m)
        x[np.arange(m)[:, None], at[:, None] + np.arange(len(bits))] = bits
        return x
    return propose


def _palindromes(rng, L):
    half = (L + 1) // 2  # includes the middle bit when L is odd

    def propose(m):
        first = rng.integers(0, 2, size=(m, half), dtype=np.uint8)
        return np.concatenate([first, first[:, : L // 2][:, ::-1]], axis=1)
    return propose


def _near_palindromes(rng, L):
    palindromes = _palindromes(rng, L)

    def propose(m):
        x = palindromes(m)
        x[np.arange(m), rng.integers(0, (L + 1) // 2, size=m)] ^= 1  # odd L, middle bit: still a palindrome
        return x
    return propose


def _dyck_words(rng, L):
    """Valid Dyck-2 words by a random push/pop walk that closes whatever is open by the end."""
    n = L // 2

    def propose(m):
        x = np.empty((m, L), dtype=np.uint8)
        stack = np.zeros((m, n // 2 + 1), dtype=np.uint8)
        depth = np.zeros(m, dtype=np.int64)
        rows = np.arange(m)
        coin = rng.integers(0, 2, size=(m, n), dtype=np.uint8)
        kinds = rng.integers(0, 2, size=(m, n), dtype=np.uint8)
        for t in range(n):
            left = n - t  # symbols still to write, this one included; depth and left share parity
            push = (depth == 0) | ((depth < left) & (coin[:, t] == 1))
            top = stack[rows, np.maximum(depth - 1, 0)]
            kind = np.where(push, kinds[:, t], top)
            stack[rows, np.where(push, depth, 0)] = np.where(push, kind, stack[rows, 0])
            depth += np.where(push, 1, -1)
            x[:, 2 * t] = kind
            x[:, 2 * t + 1] = ~push
        return x
    return propose


def _flipped_dyck_words(rng, L):
    words = _dyck_words(rng, L)

    def propose(m):
        x = words(m)
        k = rng.integers(1, min(5, L) + 1, size=m)
        rank = rng.random((m, L)).argsort(axis=1).argsort(axis=1)
        return x ^ (rank < k[:, None]).astype(np.uint8)  # k distinct random bits flipped
    return propose


def _primes(rng, L):
    def propose(m):
        values = [p for p in _next_primes(_uniform_digits(rng, m, L)) if p < 10 ** L]
        return _ints_to_rows(values, L) if values else np.zeros((0, L), dtype=np.uint8)
    return propose


def _composites(rng, L, last_digit_1379: bool):
    h = L // 2

    def propose(m):
        a, b = _uniform_digits(rng, m, h), _uniform_digits(rng, m, L - h)
        if last_digit_1379:  # the product ends in 1, 3, 7 or 9
            keep = np.isin((a[:, -1].astype(np.int64) * b[:, -1]) % 10, (1, 3, 7, 9))
            a, b = a[keep], b[keep]
        lo = 10 ** (L - 1)
        values = [u * v for u, v in zip(_rows_to_ints(a), _rows_to_ints(b)) if u * v >= lo]
        return _ints_to_rows(values, L) if values else np.zeros((0, L), dtype=np.uint8)
    return propose


def _paired_palindromes(spec: FunctionSpec, L: int, per_class: int, label: Callable, rng):
    """The original's palindrome pool: per_class palindromes, and as negatives a copy of each with one bit
    of its first half flipped; labels recomputed and kept, so at odd L the copies whose middle bit flipped
    (1 in ceil(L/2)) are positives too, and the split sends them to the test set. Each negative is one bit
    from a positive of the pool."""
    pos = _collect(spec, L, label, _palindromes(rng, L), {True: per_class})[True]
    flipped = pos.copy()
    flipped[np.arange(len(flipped)), rng.integers(0, (L + 1) // 2, size=len(flipped))] ^= 1
    still = np.asarray(label(flipped), dtype=bool)
    return np.concatenate([pos, flipped[still]]), flipped[~still]


def _pool(spec: FunctionSpec, L: int, per_class: int, label: Callable, rng) -> tuple[np.ndarray, np.ndarray]:
    """per_class positives and per_class negatives, labels recomputed by `label`."""
    def one_class(c, propose, first_chunk=None):
        return _collect(spec, L, label, propose, {c: per_class}, first_chunk)[c]

    g = spec.generator
    if g == "uniform":
        both = _collect(spec, L, label, _uniform_bits(rng, L), {True: per_class, False: per_class})
        return both[True], both[False]
    if g == "pattern":
        return one_class(True, _with_pattern(rng, L, spec.pattern)), one_class(False, _uniform_bits(rng, L))
    if g == "palindrome":
        return one_class(True, _palindromes(rng, L)), one_class(False, _near_palindromes(rng, L))
    if g == "dyck2":
        return one_class(True, _dyck_words(rng, L)), one_class(False, _flipped_dyck_words(rng, L))
    if g in ("prime", "prime_1379"):
        # each prime costs ~1-2 ms at L=100 and nearly every one is kept: do not overdraw
        primes = one_class(True, _primes(rng, L), first_chunk=per_class + per_class // 100 + 4)
        return primes, one_class(False, _composites(rng, L, g == "prime_1379"))
    raise AssertionError(f"internal: unknown generator {g!r}")


# ----------------------------------------------------------------------------- splits

@dataclass
class Split:
    """A stratified train/test split: x_* LongTensor [n, L], y_* float32 [n] of 0/1, facts (JSON-able)."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    facts: dict = field(default_factory=dict)


def data_seed(name: str, L: int, train_size: int, test_size: int, seed: int) -> int:
    """A stable 64-bit seed for the data of one task: SHA-256 of its defining values.

    Independent of model, lr, Python's hash randomisation and library versions, so every run of the
    same task sees the same split.
    """
    key = repr(("target_functions", str(name), int(L), int(train_size), int(test_size), int(seed)))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _check_size(label: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{label} must be an integer, got {value!r}")
    value = int(value)
    if value < 2:
        raise DataError(f"{label} = {value} is too small: each split needs at least one example of each "
                        "class, so use an even size >= 2")
    if value % 2:
        raise DataError(f"{label} = {value} must be even: the pool is exactly half positive and the split "
                        f"is stratified; use {value - 1} or {value + 1}")
    return value


def make_split(name: str, L: int, train_size: int, test_size: int, seed: int, *,
               positions=None, palindrome_negatives: str = "fresh") -> Split:
    """Generate the exactly balanced pool and split it, stratified, into train and test (func17 with
    palindrome_negatives = 'paired': the original's pool, see _paired_palindromes).

    The same (name, L, train_size, test_size, seed) always gives identical tensors (a numpy
    Generator(PCG64) seeded with data_seed(...); no global RNG is touched). func15/func18 read
    `positions` (default fixed_positions(L, k, 42)); the ones used are recorded in facts.
    """
    spec = get(name)
    error = spec.length_error(L)
    if error:
        raise DataError(error)
    L = int(L)
    train_size, test_size = _check_size("train_size", train_size), _check_size("test_size", test_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an integer, got {seed!r}")
    if spec.n_positions:
        positions = spec.positions(L) if positions is None else _check_positions(spec, L, positions)
        label = lambda x: spec.fn(x, positions)  # noqa: E731
    else:
        if positions is not None:
            raise DataError(f"{spec.name} reads no fixed positions; do not pass any")
        label = spec.fn
    dseed = data_seed(spec.name, L, train_size, test_size, seed)
    rng = np.random.Generator(np.random.PCG64(dseed))
    if palindrome_negatives not in ("fresh", "paired"):
        raise DataError(f"palindrome_negatives must be 'fresh' or 'paired', got {palindrome_negatives!r}")
    if palindrome_negatives == "paired" and spec.generator == "palindrome":
        pos, neg = _paired_palindromes(spec, L, (train_size + test_size) // 2, label, rng)
    else:
        pos, neg = _pool(spec, L, (train_size + test_size) // 2, label, rng)
    pos, neg = pos[rng.permutation(len(pos))], neg[rng.permutation(len(neg))]
    half = train_size // 2
    if len(neg) < half:
        raise DataError(f"{spec.name} at L={L}: only {len(neg)} of the paired pool's flips are negatives, fewer "
                        f"than the {half} the training set takes; use a larger test_set_size or even L")

    def assemble(p, q):
        x = np.concatenate([p, q])
        y = np.concatenate([np.ones(len(p), dtype=np.float32), np.zeros(len(q), dtype=np.float32)])
        order = rng.permutation(len(x))
        return torch.from_numpy(x[order].astype(np.int64)), torch.from_numpy(y[order])

    x_train, y_train = assemble(pos[:half], neg[:half])
    x_test, y_test = assemble(pos[half:], neg[half:])
    facts = _facts(spec, L, positions, seed, dseed, x_train, y_train, x_test, y_test)
    return Split(x_train, y_train, x_test, y_test, facts)


def _facts(spec, L, positions, seed, dseed, x_train, y_train, x_test, y_test) -> dict:
    train_rows = {bytes(r) for r in x_train.numpy().astype(np.uint8)}
    test_u8 = x_test.numpy().astype(np.uint8)
    test_rows = {bytes(r) for r in test_u8}
    return {
        "function": spec.name,
        "description": spec.description,
        "L": L,
        "alphabet": spec.alphabet,
        "positions": list(positions) if positions is not None else None,
        "train_size": len(y_train),
        "test_size": len(y_test),
        "train_positive_fraction": float(y_train.mean()),
        "test_positive_fraction": float(y_test.mean()),
        "train_distinct": len(train_rows),
        "test_distinct": len(test_rows),
        "train_duplicates": len(y_train) - len(train_rows),
        "test_duplicates": len(y_test) - len(test_rows),
        "test_in_train": sum(bytes(r) in train_rows for r in test_u8),
        "seed": int(seed),
        "data_seed": dseed,
        "generator_version": GENERATOR_VERSION,
    }
