"""Tests of target_functions: every function against an independent brute-force definition written
here over plain strings, hand-made edge cases, and the data generators' guarantees."""
import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import target_functions as tf  # noqa: E402

# ----------------------------------------------------------------------------- brute-force references
# Each takes the string ('0110...' or decimal digits) and, for func15/func18, the positions.


def odd(n):
    return n % 2 == 1


def ref_rule30_parity(s):
    bits = [0] + [int(c) for c in s] + [0]
    total = 0
    for i in range(1, len(bits) - 1):
        left, centre, right = bits[i - 1], bits[i], bits[i + 1]
        total += left ^ (centre | right)
    return odd(total)


def ref_sha_parity(s):
    digest = hashlib.sha256(s.encode("ascii")).digest()
    return odd(sum(bin(byte).count("1") for byte in digest))


def ref_max_window_parity(s):
    w = len(s) // 2
    return odd(max(s[i:i + w].count("1") for i in range(len(s) - w + 1)))


def ref_dyck2(s):
    symbols = {"00": "(", "01": ")", "10": "[", "11": "]"}
    stack = []
    for i in range(0, len(s), 2):
        c = symbols[s[i:i + 2]]
        if c in "([":
            stack.append(c)
        elif not stack or stack.pop() != {")": "(", "]": "["}[c]:
            return False
    return not stack


def trial_division_prime(n):
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    d = 3
    while d * d <= n:
        if n % d == 0:
            return False
        d += 2
    return True


REF = {
    "func1": lambda s, p: odd(s[: len(s) // 2].count("1")),
    "func2": lambda s, p: ref_max_window_parity(s),
    "func3": lambda s, p: ref_rule30_parity(s),
    "func4": lambda s, p: ref_sha_parity(s),
    "func6": lambda s, p: odd(sum(int(s[i]) for i in range(0, len(s), 2))),
    "func7": lambda s, p: odd(s.count("1")),
    "func8": lambda s, p: odd(sum(int(s[i]) for i in range(0, len(s), 2))),
    "func9": lambda s, p: odd(sum(int(s[i]) for i in range(1, len(s), 2))),
    "func10": lambda s, p: s[0] == "1",
    "func11": lambda s, p: s[-1] == "1",
    "func12": lambda s, p: s[len(s) // 2] == "1",
    "func13": lambda s, p: s[0] != s[-1],
    "func14": lambda s, p: s[0] == s[-1],
    "func15": lambda s, p: odd(sum(int(s[i]) for i in p)),
    "func16": lambda s, p: ref_dyck2(s),
    "func17": lambda s, p: s == s[::-1],
    "func18": lambda s, p: odd(sum(int(s[i]) for i in p)),
    "func19": lambda s, p: trial_division_prime(int(s)) if len(s) <= 9 else sympy.isprime(int(s)),
    "func20": lambda s, p: "10101010" in s,
    "func21": lambda s, p: "00111111" in s,
    "func22": lambda s, p: trial_division_prime(int(s)) if len(s) <= 9 else sympy.isprime(int(s)),
}
BINARY = [n for n in REF if n not in ("func19", "func22")]
DECIMAL = ["func19", "func22"]


def as_str(row):
    return "".join(str(int(v)) for v in row)


def to_array(strings):
    return np.array([[int(c) for c in s] for s in strings], dtype=np.int64)


def expected(name, strings, positions=None):
    if positions is None and name in ("func15", "func18"):
        positions = tf.fixed_positions(len(strings[0]), 3 if name == "func15" else 10)
    return np.array([REF[name](s, positions) for s in strings], dtype=bool)


def label(name, strings, positions=None):
    return tf.get(name)(to_array(strings), positions)


def valid_length(name, L):
    return tf.get(name).length_error(L) is None


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_fields():
    expected_names = [f"func{i}" for i in range(1, 23) if i != 5]
    assert sorted(tf.FUNCTIONS, key=lambda n: int(n[4:])) == expected_names
    for name, spec in tf.FUNCTIONS.items():
        assert spec.name == name
        assert spec.alphabet == ("dec" if name in DECIMAL else "bin")
        assert spec.description and "\n" not in spec.description
        assert spec.length_error(spec.min_length) is None
        if spec.min_length > 1:
            message = spec.length_error(spec.min_length - 1)
            assert name in message and str(spec.min_length) in message
    with pytest.raises(Exception):
        tf.FUNCTIONS["func7"].name = "other"  # frozen


def test_func5_is_absent_with_a_clear_error():
    with pytest.raises(tf.UnknownFunction, match="func5 does not exist in the original"):
        tf.get("func5")
    with pytest.raises(AttributeError, match="does not exist in the original"):
        tf.func5  # noqa: B018
    with pytest.raises(ValueError, match="func5 does not exist"):
        tf.make_split("func5", 10, 10, 10, 0)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(tf.UnknownFunction) as err:
        tf.get("fucn17")
    message = str(err.value)
    assert "'func17'" in message and "fucn17" in message and "func22" in message  # suggestion + valid list
    assert isinstance(err.value, ValueError)
    with pytest.raises(tf.UnknownFunction, match="func7"):
        tf.make_split("funk7", 10, 10, 10, 0)


@pytest.mark.parametrize("name,L,fragment", [
    ("func16", 22, "L=20 or L=24"), ("func16", 2, ">= 4"), ("func15", 2, ">= 3"), ("func18", 9, ">= 10"),
    ("func20", 7, ">= 8"), ("func21", 7, ">= 8"), ("func19", 1, ">= 2"), ("func22", 1, ">= 2"),
    ("func17", 1, ">= 2"), ("func1", 1, ">= 2")])
def test_length_errors(name, L, fragment):
    message = tf.get(name).length_error(L)
    assert message and fragment in message and name in message
    assert tf.get(name).length_error(L + (4 - L % 4 if name == "func16" else 1) + 8) is None
    assert tf.get(name).length_error("20")  # not an integer


# ----------------------------------------------------------------------------- functions vs references


@pytest.mark.parametrize("name", BINARY)
def test_binary_functions_exhaustively_at_small_L(name):
    checked = 0
    for L in range(1, 13):
        if not valid_length(name, L) or (L > 10 and name != "func16"):
            continue
        strings = ["".join(bits) for bits in itertools.product("01", repeat=L)]
        truth = expected(name, strings)
        assert np.array_equal(label(name, strings), truth), (name, L)
        assert truth.any() and not truth.all(), (name, L)  # both labels occur at every valid L
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("name", BINARY)
def test_binary_functions_on_random_strings(name):
    rnd = random.Random(f"random-strings-{name}")
    for L in (11, 17, 24, 33, 64, 100, 101):
        if not valid_length(name, L):
            continue
        strings = ["".join(rnd.choice("01") for _ in range(L)) for _ in range(150)]
        assert np.array_equal(label(name, strings), expected(name, strings)), (name, L)


def test_dyck2_exhaustively_at_16_and_on_near_valid_words():
    strings = [format(v, "016b") for v in range(1 << 16)]
    truth = expected("func16", strings)
    assert truth.sum() == 2 ** 4 * 14  # 2^(n/2) bracket types * Catalan(4) = 16 * 14 words of 8 brackets
    assert np.array_equal(label("func16", strings), truth)
    # random valid words (very rare among random strings) and their one-bit mutants, at L = 48
    rnd = random.Random(7)
    words = []
    for _ in range(200):
        stack, out = [], []
        for left in range(24, 0, -1):
            if stack and (len(stack) == left or rnd.random() < 0.5):
                out.append(stack.pop() + "1")
            else:
                kind = rnd.choice("01")
                stack.append(kind)
                out.append(kind + "0")
        word = "".join(out)
        i = rnd.randrange(48)
        words += [word, word[:i] + "10"[int(word[i])] + word[i + 1:]]
    truth = expected("func16", words)
    assert truth.sum() >= 200
    assert np.array_equal(label("func16", words), truth)


@pytest.mark.parametrize("brackets,valid", [
    ("()", True), ("[]", True), ("([])", True), ("([)]", False), ("((", False), ("))", False),
    (")(", False), ("(]", False), ("[)", False), ("()[]", True), ("[[]]", True), ("[(])", False),
    ("(()", False), ("(([]))[]", True), ("(([])][)", False), ("((((", False)])
def test_dyck2_hand_made(brackets, valid):
    bits = {"(": "00", ")": "01", "[": "10", "]": "11"}
    s = "".join(bits[c] for c in brackets)
    if len(s) % 4:
        assert tf.get("func16").length_error(len(s))
        assert not tf.func16(to_array([s]))[0]  # the raw function still answers: odd bracket count
    else:
        assert bool(label("func16", [s])[0]) is valid


def test_hand_made_cases_odd_and_minimal_lengths():
    assert label("func1", ["11001", "10001", "01111"]).tolist() == [False, True, True]  # first 2 bits
    assert label("func12", ["00100", "11011"]).tolist() == [True, False]  # x_2 at L=5
    assert label("func17", ["10101", "10100", "10111"]).tolist() == [True, False, False]  # L odd
    assert label("func17", ["11", "10"]).tolist() == [True, False]  # L = 2, the minimum
    assert label("func2", ["11011"]).tolist() == [False]  # w=2: max window count 2
    assert label("func2", ["10"]).tolist() == [True]  # w=1 at L=2
    assert label("func3", ["1"]).tolist() == [True]  # y_0 = 0 ^ (1 | 0)
    assert label("func3", ["111"]).tolist() == [True]  # y = 0^(1|1), 1^(1|1), 1^(1|0) = 1, 0, 0
    assert label("func9", ["01", "10"]).tolist() == [True, False]
    assert label("func20", ["10101010", "01010101"]).tolist() == [True, False]
    assert label("func21", ["00111111", "00111110"]).tolist() == [True, False]
    assert label("func20", ["0010101010"]).tolist() == [True]  # pattern at the last offset


def test_complements_and_duplicates():
    rnd = np.random.default_rng(5)
    for L in (2, 3, 10, 99):
        x = rnd.integers(0, 2, size=(500, L))
        assert np.array_equal(tf.get("func13")(x), ~tf.get("func14")(x))
        assert np.array_equal(tf.get("func6")(x), tf.get("func8")(x))
        digits = rnd.integers(0, 10, size=(300, L))
        digits[:, 0] = rnd.integers(1, 10, size=300)
        assert np.array_equal(tf.get("func22")(digits), tf.get("func19")(digits))


def test_positions_parity_uses_the_given_positions():
    rnd = random.Random(3)
    strings = ["".join(rnd.choice("01") for _ in range(30)) for _ in range(200)]
    for name, k in (("func15", 3), ("func18", 10)):
        positions = tuple(sorted(rnd.sample(range(30), k)))
        assert np.array_equal(label(name, strings, positions), expected(name, strings, positions))
        with pytest.raises(ValueError):
            label(name, strings, positions[:-1])
        with pytest.raises(ValueError):
            label(name, strings, (0,) * k)


def test_decimal_primes_exhaustively_at_small_L():
    for L in (2, 3, 4):
        numbers = [str(v) for v in range(10 ** (L - 1), 10 ** L)]
        assert np.array_equal(label("func19", numbers), expected("func19", numbers))
        assert np.array_equal(label("func22", numbers), expected("func22", numbers))


def test_decimal_primes_on_random_and_hand_picked_numbers():
    rnd = random.Random(11)
    for L in (5, 7, 9):
        numbers = [str(rnd.randrange(10 ** (L - 1), 10 ** L)) for _ in range(100)]
        if L == 7:
            numbers += [str(n) for n in range(10 ** 6 + 1, 10 ** 6 + 200, 2)]  # dense near 10^(L-1)
        truth = expected("func19", numbers)
        assert truth.any()
        assert np.array_equal(label("func19", numbers), truth)
    hand = {
        "1009": True, "1001": False,  # 1001 = 7 * 11 * 13
        "1013": True, "1027": False,  # 1027 = 13 * 79
        "10007": True, "10001": False,  # 73 * 137
        str(2 ** 127 - 1): True,  # Mersenne prime, 39 digits
        str(2 ** 67 - 1): False,  # Cole: 193707721 * 761838257287
        str(2 ** 128 + 1): False,  # Fermat number F7, composite
        str(10 ** 100 - 797): True,  # the largest 100-digit prime
        str(10 ** 99 + 1): False,  # divisible by 11 (odd power of ten plus one)
        str((2 ** 127 - 1) * (2 ** 89 - 1)): False,  # product of two Mersenne primes
    }
    assert label("func19", list(hand)[:4]).tolist() == list(hand.values())[:4]  # a batch of 4-digit ones
    for number, is_prime in hand.items():
        assert bool(tf.get("func19")(to_array([number]))[0]) is is_prime, number
        assert bool(tf.get("func22")(to_array([number]))[0]) is is_prime, number


def test_spec_call_validates_its_input():
    spec = tf.get("func7")
    with pytest.raises(ValueError, match="shape"):
        spec(np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="0..1"):
        spec(np.full((2, 5), 2))
    with pytest.raises(ValueError, match="0..9"):
        tf.get("func19")(np.full((2, 5), 10))
    with pytest.raises(tf.DataError, match="L=22"):
        tf.get("func16")(np.zeros((2, 22), dtype=int))
    x = torch.tensor([[1, 0, 1], [1, 1, 0]])
    assert tf.get("func7")(x).tolist() == [False, False]
    assert tf.get("func11")(x).dtype == np.bool_


# ----------------------------------------------------------------------------- fixed positions


def _global_rng_states():
    return random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state().clone(), \
        torch.initial_seed()


def test_fixed_positions_are_pure_and_well_formed():
    before = _global_rng_states()
    tf.fixed_positions.cache_clear()
    first = {(L, k): tf.fixed_positions(L, k) for L in range(10, 121) for k in (3, 10)}
    tf.fixed_positions.cache_clear()
    second = {(L, k): tf.fixed_positions(L, k) for L in range(10, 121) for k in (3, 10)}
    after = _global_rng_states()
    assert first == second
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2]) and before[3] == after[3]
    for (L, k), pos in first.items():
        assert len(pos) == k and len(set(pos)) == k and list(pos) == sorted(pos)
        assert all(isinstance(p, int) and 0 <= p < L for p in pos)
        if k == 3:
            assert set(pos) <= set(first[(L, 10)])  # S3 is the start of the same permutation as S10
    assert len({first[(L, 3)] for L in range(10, 121)}) > 100  # differ between lengths
    assert len({first[(L, 10)] for L in range(10, 121)}) == 111
    assert tf.fixed_positions(20, 3, seed=1) != tf.fixed_positions(20, 3, seed=42) \
        or tf.fixed_positions(21, 3, seed=1) != tf.fixed_positions(21, 3, seed=42)
    assert tf.fixed_positions(3, 3) == (0, 1, 2)
    assert tf.get("func15").positions(50) == tf.fixed_positions(50, 3)
    with pytest.raises(ValueError):
        tf.fixed_positions(5, 6)
    with pytest.raises(ValueError):
        tf.fixed_positions(5, 0)


def test_splitmix64_matches_the_published_reference_stream():
    # SplitMix64 seeded with 0 (Steele, Lea, Flood 2014; the reference stream of Vigna's splitmix64.c)
    state, out1 = tf._splitmix64(0)
    state, out2 = tf._splitmix64(state)
    assert (out1, out2) == (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4)


def test_fixed_positions_are_roughly_uniform():
    counts = np.zeros(12)
    for seed in range(3000):
        for p in tf.fixed_positions(12, 3, seed=seed):
            counts[p] += 1
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


# ----------------------------------------------------------------------------- generators


GEN_L = {"func16": 16, "func19": 6, "func22": 7, "func17": 11, "func18": 12}


def _check_split(split, name, L, train_size, test_size, positions=None):
    spec = tf.get(name)
    assert split.x_train.dtype == torch.long and split.x_test.dtype == torch.long
    assert split.y_train.dtype == torch.float32 and split.y_test.dtype == torch.float32
    assert tuple(split.x_train.shape) == (train_size, L) and tuple(split.x_test.shape) == (test_size, L)
    assert split.y_train.sum().item() == train_size / 2 and split.y_test.sum().item() == test_size / 2
    assert set(split.y_train.unique().tolist()) == {0.0, 1.0}
    top = 9 if spec.alphabet == "dec" else 1
    for x in (split.x_train, split.x_test):
        assert x.min() >= 0 and x.max() <= top
        if spec.alphabet == "dec":
            assert (x[:, 0] > 0).all()
    facts = split.facts
    json.dumps(facts)
    positions = positions if positions is not None else spec.positions(L)
    assert facts["positions"] == (list(positions) if positions is not None else None)
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        strings = [as_str(r) for r in x.tolist()]
        assert np.array_equal(expected(name, strings, positions), y.numpy().astype(bool)), name
    train = [as_str(r) for r in split.x_train.tolist()]
    test = [as_str(r) for r in split.x_test.tolist()]
    assert facts["function"] == name and facts["L"] == L and facts["alphabet"] == spec.alphabet
    assert facts["train_positive_fraction"] == 0.5 and facts["test_positive_fraction"] == 0.5
    assert facts["train_distinct"] == len(set(train)) and facts["test_distinct"] == len(set(test))
    assert facts["train_duplicates"] == len(train) - len(set(train))
    assert facts["test_in_train"] == sum(s in set(train) for s in test)
    assert facts["generator_version"] == tf.GENERATOR_VERSION
    return train, test


@pytest.mark.parametrize("name", list(REF))
def test_make_split_is_balanced_and_labelled_by_the_function(name):
    L = GEN_L.get(name, 14)
    split = tf.make_split(name, L, 40, 60, seed=1)
    _check_split(split, name, L, 40, 60)


@pytest.mark.parametrize("name", list(REF))
def test_make_split_at_the_minimum_length_terminates(name):
    spec = tf.get(name)
    split = tf.make_split(name, spec.min_length, 20, 20, seed=0)
    _check_split(split, name, spec.min_length, 20, 20)


def test_make_split_is_deterministic_and_leaves_global_rngs_alone():
    before = _global_rng_states()
    for name, L in (("func7", 20), ("func16", 20), ("func22", 6), ("func17", 9), ("func20", 16)):
        a = tf.make_split(name, L, 20, 30, seed=3)
        b = tf.make_split(name, L, 20, 30, seed=3)
        c = tf.make_split(name, L, 20, 30, seed=4)
        for field in ("x_train", "y_train", "x_test", "y_test"):
            assert torch.equal(getattr(a, field), getattr(b, field))
        assert a.facts == b.facts
        assert not torch.equal(a.x_train, c.x_train)
    after = _global_rng_states()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and torch.equal(before[2], after[2])


def test_data_seed_depends_on_every_field_only():
    base = ("func7", 20, 200, 2000, 0)
    seed = tf.data_seed(*base)
    assert seed == tf.data_seed(*base) and 0 <= seed < 2 ** 64
    for i, other in enumerate(("func6", 24, 202, 2002, 1)):
        changed = list(base)
        changed[i] = other
        assert tf.data_seed(*changed) != seed


def test_data_is_identical_in_a_fresh_interpreter():
    code = ("import sys, hashlib; sys.path.insert(0, %r); import target_functions as tf; "
            "s = tf.make_split('func15', 24, 20, 20, 5); "
            "print(tf.data_seed('func15', 24, 20, 20, 5), hashlib.sha256(s.x_train.numpy().tobytes()"
            " + s.x_test.numpy().tobytes()).hexdigest())") % str(ROOT)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout.split()
    s = tf.make_split("func15", 24, 20, 20, 5)
    here = hashlib.sha256(s.x_train.numpy().tobytes() + s.x_test.numpy().tobytes()).hexdigest()
    assert out == [str(tf.data_seed("func15", 24, 20, 20, 5)), here]


def test_train_and_test_are_stratified_and_shuffled():
    split = tf.make_split("func10", 30, 200, 200, seed=0)
    y = split.y_train.numpy()
    assert 0 < y[:100].sum() < 100  # not sorted by class
    assert torch.equal(split.x_train[:, 0].float(), split.y_train)  # func10 label is x_0


@pytest.mark.parametrize("train_size,test_size,fragment", [
    (21, 20, "even"), (20, 21, "even"), (0, 20, ">= 2"), (1, 20, ">= 2"), (20, 1, ">= 2"),
    (2.0, 20, "integer")])
def test_impossible_sizes_are_refused(train_size, test_size, fragment):
    with pytest.raises(tf.DataError, match=fragment):
        tf.make_split("func7", 10, train_size, test_size, 0)


def test_dyck2_at_L22_is_refused_with_a_hint():
    with pytest.raises(tf.DataError) as err:
        tf.make_split("func16", 22, 200, 200, 0)
    assert "divisible by 4" in str(err.value) and "L=20 or L=24" in str(err.value)


def test_dyck2_terminates_where_valid_words_are_few():
    # at L=20 only 2^5 * Catalan(5) = 1344 valid words exist (the original looped forever here)
    split = tf.make_split("func16", 20, 200, 2000, seed=0)
    train, test = _check_split(split, "func16", 20, 200, 2000)
    assert split.facts["test_in_train"] > 0
    tiny = tf.make_split("func16", 4, 40, 40, seed=0)  # 2 valid words only
    _check_split(tiny, "func16", 4, 40, 40)
    assert tiny.facts["train_distinct"] <= 2 + 14 and tiny.facts["train_duplicates"] > 0


def test_too_rare_class_fails_fast_with_a_helpful_message():
    # a random 5000-bit string contains 00111111 with probability 1 - ~1e-9: no negatives to be had
    with pytest.raises(tf.DataError) as err:
        tf.make_split("func21", 5000, 2, 2, 0)
    message = str(err.value)
    assert "func21" in message and "L=5000" in message and "negative" in message and "%" in message


def test_collect_gives_up_on_a_class_that_never_occurs():
    spec = tf.get("func7")
    rng = np.random.default_rng(0)
    never = lambda x: np.zeros(len(x), dtype=bool)  # noqa: E731
    with pytest.raises(tf.DataError, match="positive examples are too rare"):
        tf._collect(spec, 10, never, lambda m: rng.integers(0, 2, (m, 10)), {True: 5, False: 5})


def test_pattern_split_contains_pattern_exactly_in_positives():
    split = tf.make_split("func20", 40, 100, 100, seed=2)
    train, test = _check_split(split, "func20", 40, 100, 100)
    positives = [s for s, y in zip(train, split.y_train.tolist()) if y == 1]
    offsets = {s.index("10101010") for s in positives}
    assert len(offsets) > 5  # the pattern is placed at many positions


def test_palindrome_split_reports_overlap_at_small_L():
    split = tf.make_split("func17", 5, 40, 40, seed=0)  # only 2^3 = 8 palindromes of length 5
    train, test = _check_split(split, "func17", 5, 40, 40)
    assert split.facts["test_in_train"] > 0 and split.facts["train_duplicates"] > 0
    negatives = [s for s, y in zip(train, split.y_train.tolist()) if y == 0]
    # near misses: exactly one mirrored pair differs
    assert all(sum(s[i] != s[-1 - i] for i in range(len(s) // 2)) == 1 for s in negatives)


def test_prime_splits():
    split = tf.make_split("func22", 8, 100, 100, seed=0)
    train, test = _check_split(split, "func22", 8, 100, 100)
    for strings, y in ((train, split.y_train), (test, split.y_test)):
        for s, lab in zip(strings, y.tolist()):
            assert len(s) == 8 and trial_division_prime(int(s)) == bool(lab)
            if not lab:
                assert s[-1] in "1379"
    split19 = tf.make_split("func19", 8, 200, 200, seed=0)
    _check_split(split19, "func19", 8, 200, 200)
    negatives = [as_str(r) for r, y in zip(split19.x_train.tolist(), split19.y_train.tolist()) if y == 0]
    assert {s[-1] for s in negatives} - set("1379")  # func19's composites do end in even digits or 5


def test_next_primes_agree_with_sympy():
    rng = np.random.default_rng(0)
    for L in (2, 3, 12, 25, 40):
        digits = tf._uniform_digits(rng, 30, L)
        starts = [int(as_str(r)) for r in digits]
        assert tf._next_primes(digits) == [sympy.nextprime(s) for s in starts]


def test_positions_recorded_and_overridable():
    split = tf.make_split("func18", 30, 40, 40, seed=0)
    assert split.facts["positions"] == list(tf.fixed_positions(30, 10))
    custom = (0, 1, 29)
    split = tf.make_split("func15", 30, 40, 40, seed=0, positions=custom)
    _check_split(split, "func15", 30, 40, 40, positions=custom)
    with pytest.raises(tf.DataError):
        tf.make_split("func7", 30, 40, 40, seed=0, positions=custom)


# ----------------------------------------------------------------------------- encoding


def test_encode_vocab_and_text():
    x = np.array([[0, 1, 1], [1, 0, 0]])
    ids = tf.encode(x, "bin")
    assert ids.dtype == torch.long and ids.tolist() == [[2, 0, 1, 1], [2, 1, 0, 0]]
    assert tf.encode(torch.tensor([[3, 9]]), "dec").tolist() == [[10, 3, 9]]
    assert tf.vocab_size("bin") == 3 and tf.vocab_size("dec") == 11
    assert tf.BOS == {"bin": 2, "dec": 10}
    assert tf.as_text(np.array([0, 1, 1, 0])) == "0 1 1 0"
    assert tf.as_text(torch.tensor([1, 0, 0, 9])) == "1 0 0 9"
    with pytest.raises(ValueError, match="alphabet"):
        tf.encode(x, "hex")
    with pytest.raises(ValueError):
        tf.vocab_size("hex")


def test_sweep_folder_plots_one_panel_per_grid_point(tmp_path):
    import plot
    import sweep
    from conftest import TINY, write_settings

    base = write_settings(tmp_path / "base.py", TINY)
    assert sweep.main(["--base", str(base), "--vary", "target_func=func7,func10", "--executor", "inprocess",
                       "--yes"]) == 0
    assert plot.main(["results_new/0", "--out", str(tmp_path / "png")]) == 0
    png = tmp_path / "png" / "0_accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = plot.load_runs(tmp_path / "results_new" / "0")
    assert sorted(r["config"]["target_func"] for r in runs) == ["func10", "func7"]
    assert all([m["epoch"] for m in r["metrics"]] == [0, 1, 2] for r in runs)
