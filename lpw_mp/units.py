"""Parsing and printing of numbers, sizes (``496G``) and durations (``20us``), and the printing
of configuration values in those spellings.

Only the spellings README's Options section documents are accepted. Python's ``int()`` and
``float()`` also take underscores (``1_0``), other scripts' digits (``４``), surrounding spaces,
``nan`` and ``inf``, and ``\\d`` matches non-ASCII digits: every pattern here is spelt out in
``[0-9]`` and compiled with ``re.ASCII``, and a value must match it whole."""

import math
import re
from fractions import Fraction

#: An optional minus (so that a negative value gets the option's range in its message), digits.
_INT_RE = re.compile(r"-?[0-9]+", re.ASCII)
#: Decimal or scientific notation: 20, 0.5, .5, 1e-3, 2.5E6.
_FLOAT_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
#: Sizes and durations: plain decimals, no exponent and no sign.
_DECIMAL = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
#: Longer digit strings are refused before conversion: no option's bound needs them, and
#: ``int()`` of more than 4300 digits raises an error of its own.
MAX_DIGITS = 20

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
#: A bare B is bytes (format_size prints 12345B); iB only after a K/M/G/T.
_SIZE_RE = re.compile(_DECIMAL + r"(?:([KMGT])(?:iB)?|(B))?", re.ASCII | re.IGNORECASE)
#: 8GB: powers of 1000 (SI) or of 1024? Refused rather than guessed.
_AMBIGUOUS_SIZE_RE = re.compile(_DECIMAL + r"([KMGT])B", re.ASCII | re.IGNORECASE)
SIZE_SPELLING = ("a number of bytes, or with a K, M, G or T suffix in powers of 1024, which iB "
                 "may follow: 4096, 2M, 8GiB")

#: The micro sign (U+00B5) and the Greek mu (U+03BC) look the same; a keyboard gives either.
#: Exact fractions: 10000 * 1e-6 is 0.009999999999999998, below a bound of 10 ms.
_TIME_UNITS = {"ns": Fraction(1, 10**9), "us": Fraction(1, 10**6), "\u00b5s": Fraction(1, 10**6),
               "\u03bcs": Fraction(1, 10**6), "ms": Fraction(1, 10**3), "s": Fraction(1)}
_TIME_RE = re.compile(_DECIMAL + r"(ns|us|\u00b5s|\u03bcs|ms|s)?", re.ASCII)
DURATION_SPELLING = "a number with ns, us, µs, ms or s: 20us, 1.5ms, 2s"


def _not_finite(text: str) -> bool:
    return str(text).strip().lower().lstrip("+-") in ("nan", "inf", "infinity")


def parse_int(text: str) -> int:
    """A whole number written in ASCII digits."""
    text = str(text)
    if not _INT_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not a whole number (ASCII digits 0-9 only)")
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise ValueError(f"{text!r} is too large ({digits} digits)")
    return int(text)


def parse_float(text: str) -> float:
    """A finite number in ASCII decimal or scientific notation."""
    text = str(text)
    if _not_finite(text):
        raise ValueError(f"{text!r} is not a finite number")
    if not _FLOAT_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not a number (expected e.g. 20, 0.5, 1e-3)")
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to inf
        raise ValueError(f"{text!r} is not a finite number")
    return value


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional K/M/G/T suffix (powers of 1024), which may
    be followed by ``iB``."""
    text = str(text)
    m = _SIZE_RE.fullmatch(text)
    if not m:
        ambiguous = _AMBIGUOUS_SIZE_RE.fullmatch(text)
        if ambiguous:
            number, unit = ambiguous.group(1), ambiguous.group(2).upper()
            raise ValueError(f"size {text!r} is ambiguous ({unit}B is a power of 1000 or of "
                             f"1024): write {number}{unit} or {number}{unit}iB for powers of "
                             f"1024")
        raise ValueError(f"malformed size {text!r} (expected {SIZE_SPELLING})")
    if len(m.group(1)) > MAX_DIGITS:
        raise ValueError(f"size {text!r} is too large")
    # Exact arithmetic: a float would round 1.1G, and overflow on a long number.
    value = Fraction(m.group(1)) * _SIZE_UNITS[(m.group(2) or m.group(3) or "").upper()]
    if value.denominator != 1:
        raise ValueError(f"size {text!r} is not a whole number of bytes")
    return int(value)


def format_size(nbytes: int) -> str:
    """The shortest exact K/M/G/T spelling of ``nbytes`` (``2097152`` -> ``2M``)."""
    for suffix in "TGMK":
        unit = _SIZE_UNITS[suffix]
        if nbytes >= unit and nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return f"{nbytes}B"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional ns/us/µs/ms/s suffix (default seconds)."""
    text = str(text)
    m = _TIME_RE.fullmatch(text)
    if not m and _not_finite(text):
        raise ValueError(f"duration {text!r} is not finite")
    if not m:
        raise ValueError(f"malformed duration {text!r} (expected {DURATION_SPELLING})")
    if len(m.group(1)) > MAX_DIGITS:
        raise ValueError(f"duration {text!r} is too large")
    return float(Fraction(m.group(1)) * _TIME_UNITS[m.group(2) or "s"])


def format_duration(seconds: float, digits: int = 3) -> str:
    """A human figure with a unit chosen for ``digits`` significant digits."""
    if seconds is None:
        return "-"

    def rounded(x):
        return f"{x:.{digits}g}"

    # The unit is chosen after rounding: 999.9 ms is "1 s", not "1e+03 ms".
    if abs(float(rounded(seconds))) >= 1000:
        return f"{seconds:,.0f} s"
    for unit, scale in (("s", 1), ("ms", 1e3), ("us", 1e6)):
        if abs(float(rounded(seconds * scale))) >= 1:
            return f"{rounded(seconds * scale)} {unit}"
    return f"{rounded(seconds * 1e9)} ns"


def _rate(x) -> str:
    return f"{x:g}/s"


def _number(x) -> str:
    return f"{x:g}"


#: How to print every configuration value that is not just ``str``: Config attribute -> how.
VALUE_FORMATS = {
    "memory": format_size, "thp_size": format_size, "walk_rate": _rate,
    "walk_window": format_duration, "pte_fraction": _number, "active_fraction": _number,
    "walker_time": format_duration, "ipi_timeout": format_duration,
}


def format_value(name: str, value) -> str:
    """A configuration value as a person would type it (``memory`` 33554432 -> ``32M``)."""
    return VALUE_FORMATS.get(name, str)(value)
