"""A strategy measured more than once (``--repeat N``): its samples, the leg the tables show
(every figure the median of the samples), and each figure's interval.

A leg of a result (format version 2) keeps every repeat's own row under ``samples``, in the
order they ran; ``repeat`` numbers the round of the run each came from (legs run interleaved,
ABCABC, so samples with the same ``repeat`` ran minutes apart, not an hour). The figures of
the leg itself are medians over the samples; ``annotate`` adds ``intervals``.

Ratios to ipi (``vs ipi`` on both sides) are paired: the samples of the same round are
divided, and the median and interval are those of the per-round ratios. A drift of the host
across the run then moves numerator and denominator together instead of widening both."""

import re
import statistics
from dataclasses import dataclass

from lpw_mp.results.stats import CONFIDENCE, median_interval
from lpw_mp.units import format_duration


@dataclass(frozen=True)
class Figure:
    """A figure of the tables, by the column key the tables use for it."""
    key: str
    #: What it is, in compare's and plot's words.
    title: str
    #: "s" (seconds), "ns", "ratio" or "rate" (per second): how to print it.
    unit: str
    #: Larger is better (a speedup, walks per second); else smaller is.
    higher_is_better: bool = False


def _walker(sample: dict, key: str):
    return (sample.get("walker_side") or {}).get(key)


#: Figures of one sample: key -> (Figure, value of a sample).
FIGURES = {
    "time": (Figure("time", "operation time", "s"), lambda s: s["wall_s"]),
    "per_op": (Figure("per_op", "time per operation", "s"), lambda s: s["per_op_s"]),
    "ipi_p50": (Figure("ipi_p50", "IPI round p50", "s"), lambda s: s["ipi_round_s"]["median"]),
    "ipi_p99": (Figure("ipi_p99", "IPI round p99", "s"), lambda s: s["ipi_round_s"]["p99"]),
    "walks_per_s": (Figure("walks_per_s", "walker-phase walks/s", "rate", True),
                    lambda s: _walker(s, "walks_per_s")),
    "walker_p50": (Figure("walker_p50", "begin+end p50", "ns"),
                   lambda s: _walker(s, "begin_end_median_ns")),
    "walker_p99": (Figure("walker_p99", "begin+end p99", "ns"),
                   lambda s: _walker(s, "begin_end_p99_ns")),
}


def _ratio(num, den):
    return num / den if num is not None and den else None


#: Figures relative to ipi's sample of the same round: key -> (Figure, f(ipi's, this)).
PAIRED = {
    "vs_ipi": (Figure("vs_ipi", "speedup over ipi", "ratio", True),
               lambda base, s: _ratio(base["wall_s"], s["wall_s"])),
    "walker_vs_ipi": (Figure("walker_vs_ipi", "begin+end p50 / ipi's", "ratio"),
                      lambda base, s: _ratio(_walker(s, "begin_end_median_ns"),
                                             _walker(base, "begin_end_median_ns"))),
    "p99_vs_ipi": (Figure("p99_vs_ipi", "begin+end p99 / ipi's", "ratio"),
                   lambda base, s: _ratio(_walker(s, "begin_end_p99_ns"),
                                          _walker(base, "begin_end_p99_ns"))),
}


#: What a leg has that its samples do not: who it is, and the verdicts ``annotate`` adds.
NOT_SAMPLED = ("strategy", "plugin", "safe", "kernel", "status", "safety", "warnings",
               "warning_figures", "walker_vs_ipi", "speedup_vs_ipi", "overlap", "intervals")


def sample_of(row: dict, repeat: int) -> dict:
    """A leg's row (``runner.leg_result``, or a version 1 leg) as the sample of round
    ``repeat``."""
    return {"repeat": repeat, **{k: v for k, v in row.items() if k not in NOT_SAMPLED}}


def samples_of(leg: dict) -> list:
    """The leg's samples; a leg without them (a version 1 result) is its own one sample."""
    return leg.get("samples") or [leg]


def figure_values(leg: dict, key: str, base: dict = None) -> list:
    """The per-sample values of figure ``key`` (a ``FIGURES`` or ``PAIRED`` key; ``base`` is
    ipi's leg for the paired ones), missing values left out."""
    if key in PAIRED:
        if base is None:
            return []
        fn = PAIRED[key][1]
        theirs = {s.get("repeat", 1): s for s in samples_of(base)}
        pairs = [(theirs.get(s.get("repeat", 1)), s) for s in samples_of(leg)]
        values = [fn(b, s) for b, s in pairs if b is not None]
    else:
        fn = FIGURES[key][1]
        values = [fn(s) for s in samples_of(leg)]
    return [v for v in values if v is not None]


def figure_key(text: str) -> str:
    """A figure's key as a user may type it: ``per-op``, ``Per_Op`` and ``per_op`` are
    ``per_op`` (whether it names a figure is the caller's to say)."""
    return text.strip().lower().replace("-", "_")


def figure(key: str) -> Figure:
    return (FIGURES.get(key) or PAIRED[key])[0]


def format_figure(unit: str, value) -> str:
    """A value of a figure of ``unit`` as the tables print it: ``4.26 ms``, ``636 ns``,
    ``66,707`` (per second), ``5.19x``, ``20.8x``, ``2,534x``; ``-`` for None."""
    if value is None:
        return "-"
    if unit in ("s", "ns"):
        return format_duration(value / 1e9 if unit == "ns" else value)
    if unit == "rate":
        return f"{value:,.0f}"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 \
        else f"{value:.2f}x"


#: A figure's text ends in one of these units; an interval's low end drops it when the high
#: end has the same one (``2.05-2.31 s``).
_UNIT = re.compile(r"^(.*?)( ns| us| ms| s|x)$")


def interval_meaning(n: int, confidence=None) -> str:
    """What ``(low-high)`` means, in the words of the run and sweep reports: for intervals of
    ``n`` samples whose (lowest) ``confidence`` is given, how sure they are."""
    text = "(low-high) is the interval of the median from the order statistics"
    if confidence is None:
        return text
    if confidence < CONFIDENCE:
        return (f"{text}: with {n} samples that is their range, which holds the median with "
                f"{confidence:.1%} confidence (6 repeats give 95%)")
    return f"{text}, at {confidence:.1%} confidence or more"


def figure_text(unit: str, value, interval=None) -> str:
    """``4.26 ms (4.1-4.39 ms)``: a value of a figure of ``unit`` and, if there is one, its
    interval."""
    show = lambda v: format_figure(unit, v)  # noqa: E731
    return show(value) + (interval_text(interval, show) if interval else "")


def interval_text(interval, show) -> str:
    """`` (low-high)`` of ``stats.median_interval`` ``interval`` printed by ``show``."""
    low, high = show(interval["low"]), show(interval["high"])
    lo, hi = _UNIT.match(low), _UNIT.match(high)
    if lo and hi and lo.group(2) == hi.group(2):
        low = lo.group(1)
    return f" ({low}-{high})"


def intervals(leg: dict, base: dict = None) -> dict:
    """``key -> stats.median_interval`` of every figure with two or more values."""
    out = {}
    for key in (*FIGURES, *PAIRED):
        interval = median_interval(figure_values(leg, key, base))
        if interval is not None:
            out[key] = interval
    return out


# -- combining the samples into the leg the tables show -------------------------------------

#: Keys a sample has that the combined leg does not: raw data, read from the samples, or
#: gathered from them whole (``combine``).
_RAW = ("repeat", "trace", "slowest_rounds")
#: Slowest IPI rounds a leg lists, over all its samples.
SLOWEST_LISTED = 5


def combine(samples: list) -> dict:
    """The figures of a leg over its ``samples`` (rows as ``runner.leg_result`` makes them):
    each number the median of the samples' (counts the lower median, so they stay whole),
    the violations added up (every sample's walkers count for safety), histograms and other
    lists left in the samples."""
    out = _combine_dicts(samples)
    found = [s["violations"] for s in samples]
    by_kind = {}
    for v in found:
        for kind, count in v["by_kind"].items():
            by_kind[kind] = by_kind.get(kind, 0) + count
    out["violations"] = {"total": sum(v["total"] for v in found), "by_kind": by_kind,
                         "examples": [e for v in found for e in v["examples"]][:10]}
    rounds = [{**r, "repeat": s["repeat"]} for s in samples for r in s.get("slowest_rounds")
              or ()]
    if any("slowest_rounds" in s for s in samples):
        out["slowest_rounds"] = sorted(rounds, key=lambda r: -r["took_s"])[:SLOWEST_LISTED]
    traces = [s["trace"] for s in samples if s.get("trace")]
    if traces:
        out["traces"] = traces
    return out


def _combine_dicts(dicts: list) -> dict:
    out = {}
    for key in dicts[0]:
        if key in _RAW or key.endswith(("_hist", "_histogram")):
            continue
        value = _combine([d.get(key) for d in dicts])
        if value is not _OMIT:
            out[key] = value
    return out


_OMIT = object()


def _combine(values: list):
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, dict):
        return _combine_dicts([v for v in present if isinstance(v, dict)])
    if isinstance(first, (list, tuple)):
        return _OMIT
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return statistics.median_low(present)
    return statistics.median(present)
