"""Parsing and printing of sizes (``496G``) and durations (``20us``)."""

import re

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_TIME_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional K/M/G/T suffix (powers of 1024)."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"malformed size {text!r} (expected e.g. 2M, 496G)")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    if value != int(value):
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
    """Seconds in ``text``: a number with an optional ns/us/ms/s suffix (default seconds)."""
    m = _TIME_RE.match(str(text))
    if not m:
        raise ValueError(f"malformed duration {text!r} (expected e.g. 20us, 1.5ms, 2s)")
    return float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """A human figure with a unit chosen for 3 significant digits."""
    if seconds is None:
        return "-"
    s = abs(seconds)
    if s >= 1000:
        return f"{seconds:,.0f} s"
    if s >= 1:
        return f"{seconds:.3g} s"
    if s >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{seconds * 1e6:.3g} us"
    return f"{seconds * 1e9:.3g} ns"
