"""The sweep's figure (``sweep.png``): the operation time against the first varied parameter,
one line per strategy, one panel per value of the second. matplotlib is the optional ``plot``
extra, so it is imported only when a figure is drawn."""

import importlib.util
import json
import math

from lpw_mp.results.sweeps import NUMERIC, groups, point_label, series, strategies_of
from lpw_mp.units import format_duration, format_value


#: How to get matplotlib, for the one line that says it is missing.
INSTALL = "pip install 'lpw_mp[plot]'"


def available() -> bool:
    """Whether matplotlib is installed, found without importing it (which takes a second)."""
    return importlib.util.find_spec("matplotlib") is not None


def _axis_values(name: str, values: list):
    """Plot positions for a parameter's values and whether a log axis fits them."""
    if name not in NUMERIC:
        return list(range(len(values))), False
    positive = all(v > 0 for v in values)
    return list(values), positive and len(values) > 1 and max(values) >= 4 * min(values)


def _leading(y: float) -> int:
    """The leading digit of a positive number (0.0005 -> 5)."""
    return int(round(y / 10 ** math.floor(math.log10(y))))


def write_plot(sweep: dict, path: str) -> bool:
    """Write the PNG: time against the first varied parameter, one panel per value of the
    second. False (nothing written) when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return False
    first = sweep["vary"][0]
    name, values = first["name"], first["values"]
    panels = groups(sweep, name)
    xpos, logx = _axis_values(name, values)
    where = dict(zip(values, xpos))
    fig = Figure(figsize=(6.4 * min(len(panels), 3), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    fits = {(f["strategy"], json.dumps(f["fixed"])): f for f in sweep["fits"]
            if f["parameter"] == name}
    for ax, fixed in zip(axes, panels):
        ys_all = []
        for strategy in strategies_of(sweep):
            pts = [(where[p["x"]], p["median"]) for p in series(sweep, name, strategy, fixed)
                   if p["median"] is not None and p["median"] > 0]
            if not pts:
                continue
            ys_all += [y for _, y in pts]
            fit = fits.get((strategy, json.dumps(fixed)))
            label = strategy
            if fit and fit["exponent"] is not None:
                label += f" (x^{fit['exponent']:.2f})"
            ax.plot(*zip(*pts), marker="o", label=label)
        if logx:
            ax.set_xscale("log", base=2 if name == "cpus" else 10)
        if ys_all:
            ax.set_yscale("log")
            # Durations as people read them; of the minor ticks matplotlib would label (on a
            # short axis), only the 2s and 5s, which do not crowd.
            minor = ax.yaxis.get_minor_formatter()
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: format_duration(y)))
            ax.yaxis.set_minor_formatter(FuncFormatter(
                lambda y, pos: format_duration(y) if minor(y, pos) and _leading(y) in (2, 5)
                else ""))
        # Ticks at the swept values, spelt as typed (64M, not 6.7e7).
        ax.set_xticks(xpos, [format_value(name, v) for v in values])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name.replace("_", "-"))
        ax.set_title(point_label(fixed) or f"{sweep['config']['op']} time vs "
                                            f"{name.replace('_', '-')}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel(f"{sweep['config']['op']} time")
    # PNG whatever the name ends in: the caller may write to a temporary name first.
    fig.savefig(path, dpi=100, format="png")
    return True
