import pytest

from lpw_mp.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize("text,expected", [
    ("2M", 2 << 20), ("496G", 496 << 30), ("1T", 1 << 40), ("4096", 4096), ("64k", 64 << 10),
    ("2MiB", 2 << 20), ("1.5G", 3 << 29), (" 8G ", 8 << 30),
])
def test_parse_size_accepts_suffixes(text, expected):
    """Sizes take K/M/G/T suffixes in powers of 1024, any case, with an optional iB/B."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "1.2.3M", "two", "0.3K"])
def test_parse_size_rejects_malformed(text):
    """A malformed size, or one that is not a whole number of bytes, is a ValueError."""
    with pytest.raises(ValueError):
        parse_size(text)


def test_seed_region_is_253952_pmds():
    """The seed's 496 GB of 2 MiB THPs is 253,952 PMDs."""
    assert parse_size("496G") // parse_size("2M") == 253_952


@pytest.mark.parametrize("n", [4096, 2 << 20, 496 << 30, 12345])
def test_format_size_round_trips(n):
    """format_size prints a spelling that parse_size reads back exactly."""
    assert parse_size(format_size(n)) == n


@pytest.mark.parametrize("text,seconds", [("20us", 20e-6), ("1.5ms", 1.5e-3), ("2", 2.0),
                                          ("100ns", 1e-7), ("3s", 3.0)])
def test_parse_duration(text, seconds):
    """Durations take ns/us/ms/s suffixes; a bare number is seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ms", "1h", "-1s", "fast"])
def test_parse_duration_rejects_malformed(text):
    """Anything else is a ValueError."""
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_picks_a_unit():
    """Durations print with three significant digits in the largest fitting unit."""
    assert format_duration(0.00123) == "1.23 ms"
    assert format_duration(2.5) == "2.5 s"
    assert format_duration(1090.4) == "1,090 s"
    assert format_duration(None) == "-"
