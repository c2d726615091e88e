"""AxB values and literal parsing: the traps of the original sweep (curly quotes, values with an 'x')."""
import pytest

import settings
import sweep


@pytest.mark.parametrize("text, expected", [
    ("0.1x5", (0.1, 5)),
    ("1e-5x1", (1e-5, 1)),
    ("200", (200, 1)),
    ("qwen1.7B", ("qwen1.7B", 1)),
    ("qwen1.7Bx3", ("qwen1.7B", 3)),
    ("2x3x4", ("2x3", 4)),            # B is the digits after the LAST x
    ("2x3x4x1", ("2x3x4", 1)),
    ("'2x3x4'", ("2x3x4", 1)),        # a quoted value alone is A alone
    ("'func7'x2", ("func7", 2)),
    ("\u2019func7\u2019x1", ("func7", 1)),  # curly quotes as pasted from a document
    ("\u201cfunc1\u201dx2", ("func1", 2)),
    ("func7", ("func7", 1)),
    ("Truex2", (True, 2)),
    ("falsex1", (False, 1)),
    ("Nonex3", (None, 3)),
    ("[1, 2]x2", ([1, 2], 2)),
    ("  64x2  ", (64, 2)),
    ("box", ("box", 1)),
    ("-3x2", (-3, 2)),
])
def test_parse_axb(text, expected):
    value, count = sweep.parse_axb(text)
    assert (value, count) == expected
    assert type(value) is type(expected[0])


@pytest.mark.parametrize("text", ["", "   ", "0.1x0"])
def test_parse_axb_refuses(text):
    with pytest.raises(sweep.SweepError):
        sweep.parse_axb(text)


@pytest.mark.parametrize("text, expected", [
    ("1e-3", 1e-3), ("10", 10), ("10 * 1000", 10000), ("2 ** 10", 1024), ("TRUE", True), ("none", None),
    ("'a b'", "a b"), ("hello world", "hello world"), ("[1, 2.5]", [1, 2.5]), ("{'a': 1}", {"a": 1}),
    ("__import__('os')", "__import__('os')"),  # never executed: a bare string
])
def test_parse_value(text, expected):
    assert settings.parse_value(text) == expected


def test_split_values_keeps_brackets_and_quotes_together():
    assert sweep._split_values("1x2, [1,2]x3,'a,b'x1") == ["1x2", "[1,2]x3", "'a,b'x1"]
