"""The sweep's figure (``sweep.png``): a figure of the legs (``--metric``, the operation time by
default) against the first varied parameter, one line per strategy, one panel per value of the
second. matplotlib is the optional ``plot`` extra, so it is imported only when a figure is
drawn.

Each point is the median of its samples, with the interval of the median as an error bar
(``stats.median_interval``); a point whose leg has a warning about the figure (the ``?`` of a
run's tables) is drawn hollow. Each strategy's power law (``sweeps.fit_sweep``: over every
sample) is a dashed line of its colour, its exponent and the exponent's interval in the
legend. The title says what was not varied; a footnote says what the marks mean.

Every artist of a strategy has a ``gid`` saying what it is, for whoever reads the figure back
(``draw_figure``): ``median:S`` (the line through the medians), ``interval:S`` (the error
bars' line collection), ``flagged:S`` (the hollow markers), ``fit:S`` (the fitted line) and
``baseline:ipi`` (1, for a ratio to ipi)."""

import importlib.util
import json
import math

from lpw_mp.results.repeats import PAIRED
from lpw_mp.results.stats import median_interval
from lpw_mp.results.sweeps import (NUMERIC, fit_sweep, fitted_strategies, fixed_parameters,
                                   groups, host_kinds, metric_title, point_label, series,
                                   shown, strategies_of)
from lpw_mp.units import format_value


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


def fit_label(strategy: str, fit: dict) -> str:
    """``ipi fit x^1.02 [0.95, 1.09]``, ``... (no interval)`` or ``..., no trend``."""
    text = f"{strategy} fit x^{fit['exponent']:.2f}"
    if fit["low"] is None:
        return text + " (no interval)"
    text += f" [{fit['low']:.2f}, {fit['high']:.2f}]"
    return text + ", no trend" if fit["trend"] == "none detected" else text


def _fold(items: list, width: int) -> list:
    """``items`` joined by commas in lines of about ``width`` characters, never breaking one."""
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + len(item) + 2 > width:
            lines[-1] += ","
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + item
    return lines


def title(sweep: dict, metric: str, width: int) -> str:
    """What the figure shows against what, then everything that was not varied (folded to
    ``width`` characters)."""
    name = sweep["vary"][0]["name"].replace("_", "-")
    c = sweep["config"]
    fixed = [f"{c['op']} under {', '.join(strategies_of(sweep))}"] if metric != "time" else []
    fixed += fixed_parameters(sweep) + [f"seed {c['seed']}"]
    repeat = c.get("repeat", 1)
    fixed.append(f"{repeat} repeats" if repeat > 1 else "1 sample per point")
    kinds = len(host_kinds(sweep))
    if kinds > 1:
        fixed.append(f"points from {kinds} kinds of host")
    return "\n".join([f"{metric_title(sweep, metric)} vs {name}"]
                     + _fold(["fixed: " + fixed[0], *fixed[1:]], width))


def _legend(ax, left: list, right: list) -> int:
    """The panel's legend under it: the strategies (and ipi's baseline) in the left column,
    their fits (and the hollow marker) in the right one, or up to three columns of the left
    ones when there is nothing for the right. Returns its rows."""
    where = dict(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12))
    if not right:
        ax.legend(handles=left, ncols=min(len(left), 3), **where)
        return -(-len(left) // 3)
    rows = max(len(left), len(right))
    blank = ax.plot([], [], alpha=0, label=" ")[0]
    ax.legend(handles=[*left, *[blank] * (rows - len(left)), *right,
                       *[blank] * (rows - len(right))], ncols=2, **where)
    return rows


def footnote(sweep: dict, fitted: bool, flagged: bool) -> str:
    """What the error bars, the dashed lines and the hollow markers are."""
    n = sweep["config"].get("repeat", 1)
    if n > 1:
        level = median_interval(range(n))["confidence"]
        lines = [f"error bars: interval of the median of {n} repeats (order statistics, "
                 f"{level:.1%} confidence)"]
    else:
        lines = ["one sample per point: no error bars (--repeat 6 gives 95% intervals)"]
    if fitted:
        lines.append("dashed: power law, least squares on log-log over every sample; "
                     "[95% t interval of the exponent]")
    if flagged:
        lines.append("hollow: a run would mark the figure ? (its leg has a warning about it; "
                     "see sweep.md)")
    return "\n".join(lines)


def write_plot(sweep: dict, path: str, metric: str = None) -> bool:
    """Write the PNG of ``draw_figure``. False (nothing written) when matplotlib is not
    installed."""
    fig = draw_figure(sweep, metric)
    if fig is None:
        return False
    # PNG whatever the name ends in: the caller may write to a temporary name first.
    fig.savefig(path, dpi=100, format="png")
    return True


def draw_figure(sweep: dict, metric: str = None):
    """The matplotlib Figure of figure ``metric`` (the sweep's own by default) against the
    first varied parameter, one panel per value of the second; None when matplotlib is not
    installed."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return None
    import numpy

    metric = metric or sweep["metric"]
    show = shown(metric)
    first = sweep["vary"][0]
    name, values = first["name"], first["values"]
    panels = groups(sweep, name)
    xpos, logx = _axis_values(name, values)
    where = dict(zip(values, xpos))
    colours = {s: f"C{i}" for i, s in enumerate(strategies_of(sweep))}
    width = 6.4 * min(len(panels), 3)
    fig = Figure(figsize=(width, 6.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    fits = {(f["strategy"], json.dumps(f["fixed"])): f for f in fit_sweep(sweep, metric)
            if f["parameter"] == name}
    any_fit = any_flag = False
    rows = 1
    for ax, fixed in zip(axes, panels):
        ys_all, lines, fitted, baseline, hollow = [], [], [], [], []
        if metric in PAIRED:
            baseline.append(ax.axhline(1.0, color=colours["ipi"], linestyle=":",
                                       gid="baseline:ipi", label="ipi (baseline: 1)"))
        for strategy in fitted_strategies(sweep, metric):
            colour = colours[strategy]
            pts = [p for p in series(sweep, name, strategy, fixed, metric)
                   if p["median"] is not None and p["median"] > 0]
            if not pts:
                continue
            xs = [where[p["x"]] for p in pts]
            ys = [p["median"] for p in pts]
            ys_all += ys + [p["interval"]["low"] for p in pts if p["interval"]] + \
                [p["interval"]["high"] for p in pts if p["interval"]]
            flagged = [i for i, p in enumerate(pts) if p["warnings"]]
            plain = [i for i in range(len(pts)) if i not in flagged]
            lines += ax.plot(xs, ys, color=colour, marker="o", markevery=plain, label=strategy,
                             gid=f"median:{strategy}")
            if flagged:
                ax.plot([xs[i] for i in flagged], [ys[i] for i in flagged], linestyle="none",
                        marker="o", markerfacecolor="white", markeredgecolor=colour,
                        markeredgewidth=1.5, zorder=3, gid=f"flagged:{strategy}")
            bars = [i for i, p in enumerate(pts) if p["interval"]]
            if bars:
                low = [ys[i] - pts[i]["interval"]["low"] for i in bars]
                high = [pts[i]["interval"]["high"] - ys[i] for i in bars]
                _, _, (bar_lines,) = ax.errorbar(
                    [xs[i] for i in bars], [ys[i] for i in bars], yerr=[low, high],
                    fmt="none", ecolor=colour, elinewidth=1, capsize=3)
                bar_lines.set_gid(f"interval:{strategy}")
            fit = fits.get((strategy, json.dumps(fixed)))
            if fit and fit["exponent"] is not None and name in NUMERIC:
                any_fit = True
                lo, hi = min(xs), max(xs)
                line = numpy.geomspace(lo, hi, 50) if lo > 0 else numpy.linspace(lo, hi, 50)
                fitted += ax.plot(line, fit["coefficient"] * line ** fit["exponent"],
                                  color=colour, linestyle="--", linewidth=1,
                                  label=fit_label(strategy, fit), gid=f"fit:{strategy}")
            if flagged and not hollow:
                any_flag = True
                hollow += ax.plot([], [], linestyle="none", marker="o",
                                  markerfacecolor="white", markeredgecolor="grey",
                                  label="hollow: a run flags it ?")
        if logx:
            ax.set_xscale("log", base=2 if name == "cpus" else 10)
        if ys_all and min(ys_all) > 0:
            ax.set_yscale("log")
            # Figures as people read them; of the minor ticks matplotlib would label (on a
            # short axis), only the 2s and 5s, which do not crowd.
            minor = ax.yaxis.get_minor_formatter()
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: show(y) if y > 0 else ""))
            ax.yaxis.set_minor_formatter(FuncFormatter(
                lambda y, pos: show(y) if y > 0 and minor(y, pos) and _leading(y) in (2, 5)
                else ""))
        elif not ys_all and metric not in PAIRED:
            ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center")
        # Ticks at the swept values, spelt as typed (64M, not 6.7e7).
        ax.set_xticks(xpos, [format_value(name, v) for v in values])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name.replace("_", "-"))
        if fixed:
            ax.set_title(point_label(fixed))
        ax.grid(True, which="both", alpha=0.3)
        if lines or baseline:
            rows = max(rows, _legend(ax, lines + baseline, fitted + hollow))
    fig.set_figheight(6.4 + 0.2 * rows)
    axes[0].set_ylabel(metric_title(sweep, metric))
    fig.suptitle(title(sweep, metric, int(11 * width)))
    fig.supxlabel(footnote(sweep, any_fit, any_flag), fontsize="small", ha="left", x=0.01)
    return fig
