"""Numbers, sizes and durations: exactly the spellings README's Options section documents."""

import pytest

from lpw_mp.units import (format_duration, format_size, parse_duration, parse_float, parse_int,
                          parse_size)

#: What Python's int(), float() or a \d pattern would take but the documentation does not say.
LENIENT = ["1_0", "\uff14", "\u0664", " 4", "4 ", "4\n", "+4", "0x10", "4.0", "", "\u00b2"]
NON_FINITE = ["nan", "NaN", "NAN", "inf", "-inf", "+inf", "Inf", "INFINITY", "-Infinity", "1e999"]


@pytest.mark.parametrize("text,expected", [("0", 0), ("4096", 4096), ("007", 7), ("-3", -3)])
def test_parse_int_takes_ascii_digits(text, expected):
    """Whole numbers are ASCII digits (a minus is read so that the range check can name it)."""
    assert parse_int(text) == expected


@pytest.mark.parametrize("text", LENIENT + ["9" * 21, "9" * 5000])
def test_parse_int_refuses_what_int_would_stretch_to(text):
    """Underscores, full-width or Arabic-Indic digits, spaces, signs, hex, decimals: refused,
    and so is a number too long for any bound (int() itself fails past 4300 digits)."""
    with pytest.raises(ValueError, match="not a whole number|too large"):
        parse_int(text)


@pytest.mark.parametrize("text,expected", [("20", 20.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0),
                                           ("1e-3", 1e-3), ("2.5E6", 2.5e6), ("-1", -1.0),
                                           ("1e-999", 0.0)])
def test_parse_float_takes_decimal_and_scientific_notation(text, expected):
    """Floats are ASCII decimal or scientific notation."""
    assert parse_float(text) == expected


@pytest.mark.parametrize("text", NON_FINITE)
def test_parse_float_refuses_non_finite_values_in_any_spelling(text):
    """nan, inf and -inf in any capitalisation, and overflow to infinity, are not finite."""
    with pytest.raises(ValueError, match="not a finite number"):
        parse_float(text)


@pytest.mark.parametrize("text", LENIENT[:3] + LENIENT[3:7] + ["1e", "e3", "1,5", "\uff11.5"])
def test_parse_float_refuses_lenient_spellings(text):
    """float() would take underscores, other scripts' digits and surrounding spaces."""
    with pytest.raises(ValueError, match="not a number"):
        parse_float(text)


@pytest.mark.parametrize("text,expected", [
    ("2M", 2 << 20), ("496G", 496 << 30), ("1T", 1 << 40), ("4096", 4096), ("64k", 64 << 10),
    ("2MiB", 2 << 20), ("8gib", 8 << 30), ("1.5G", 3 << 29), ("0.25K", 256), ("512B", 512),
])
def test_parse_size_accepts_suffixes(text, expected):
    """Sizes take K/M/G/T suffixes in powers of 1024, either case, optionally followed by iB,
    or B for bytes; a fraction counts if it comes to whole bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "1.2.3M", "two", "0.3K", " 8G ", "8G ",
                                  "8Gi", "8iB", "8P", "1_0M", "\uff18G", "8 G", "nan", "1e3K"])
def test_parse_size_rejects_malformed(text):
    """A malformed size, or one that is not a whole number of bytes, is a ValueError."""
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("text", ["8GB", "8gb", "8Gb", "8KB", "2MB", "1TB", "1.5GB"])
def test_parse_size_refuses_ambiguous_byte_units(text):
    """GB may be 10**9 or 2**30 bytes: refused, with the two spellings that mean 2**30."""
    number, unit = text[:-2], text[-2].upper()
    with pytest.raises(ValueError, match=f"ambiguous.*write {number}{unit} or {number}{unit}iB"):
        parse_size(text)


def test_seed_region_is_253952_pmds():
    """The seed's 496 GB of 2 MiB THPs is 253,952 PMDs."""
    assert parse_size("496G") // parse_size("2M") == 253_952


@pytest.mark.parametrize("n", [4096, 2 << 20, 496 << 30, 12345])
def test_format_size_round_trips(n):
    """format_size prints a spelling that parse_size reads back exactly."""
    assert parse_size(format_size(n)) == n


@pytest.mark.parametrize("text,seconds", [("20us", 20e-6), ("1.5ms", 1.5e-3), ("2", 2.0),
                                          ("100ns", 1e-7), ("3s", 3.0), ("20\u00b5s", 20e-6),
                                          ("20\u03bcs", 20e-6), ("10000us", 0.01)])
def test_parse_duration(text, seconds):
    """Durations take ns/us/µs/ms/s suffixes (micro sign or Greek mu); a bare number is
    seconds; the unit is applied exactly, so 10000us is exactly the 10 ms bound."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ms", "1h", "-1s", "fast", "1e-3s", " 1s", "1 s", "20US",
                                  "1_0ms", "\uff11s", "inf", "nan", "-inf"])
def test_parse_duration_rejects_malformed(text):
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="malformed duration|not finite"):
        parse_duration(text)


def test_format_duration_picks_a_unit():
    """Durations print with three significant digits in the largest fitting unit."""
    assert format_duration(0.00123) == "1.23 ms"
    assert format_duration(2.5) == "2.5 s"
    assert format_duration(1090.4) == "1,090 s"
    assert format_duration(None) == "-"


@pytest.mark.parametrize("seconds,text", [(999.9, "1,000 s"), (0.9996, "1 s"),
                                          (0.99999e-6, "1 us")])
def test_format_duration_picks_the_unit_after_rounding(seconds, text):
    """A value that rounds up to the next unit is printed in it, never as 1e+03."""
    assert format_duration(seconds) == text


def test_format_duration_can_show_more_digits():
    """With more digits, a value just below a bound does not print as the bound."""
    assert format_duration(0.009999) == "10 ms"
    assert format_duration(0.009999, digits=6) == "9.999 ms"
