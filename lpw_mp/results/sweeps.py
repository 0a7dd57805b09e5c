"""A sweep document (``sweep.json``) read back: the series it holds, the power-law fits of
them, and its terminal table and Markdown report. ``commands/sweep.py`` runs the sweep and
``plot.py`` draws it."""

import math
import statistics

from tabulate import tabulate

from lpw_mp.results.fit import format_exponent, power_law
from lpw_mp.results.repeats import FIGURES, PAIRED, figure_values
from lpw_mp.results.stats import median_interval
from lpw_mp.units import format_duration, format_value

#: The parameters a sweep can vary, in the order its description lists the fixed ones
#: (``commands/sweep.py`` parses each).
PARAMETERS = ("cpus", "memory", "thp_size", "walk_rate", "walk_window", "pte_fraction",
              "active_fraction", "cpumask")
#: The others are categories: no power law, no log axis.
NUMERIC = {name for name in PARAMETERS if name != "cpumask"}


def point_label(values: dict) -> str:
    """``cpus=4 memory=8M``: a point's (or a group's) values as they would be typed."""
    return " ".join(f"{k.replace('_', '-')}={format_value(k, v)}" for k, v in values.items())


def problem(sweep: dict):
    """What a sweep document valid against its schema can still get wrong for the tables and
    the figure, which the schema cannot say: a varied parameter this version does not know,
    a numeric one with a value that is not a number, a point whose values are not among the
    varied ones. None when there is nothing."""
    for v in sweep["vary"]:
        if v["name"] not in PARAMETERS:
            return f"it varies {v['name']!r}, which is not a sweep parameter"
        if v["name"] in NUMERIC and not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v["values"]):
            return f"a value of {v['name']} is not a number"
    for i, point in enumerate(sweep["points"]):
        if any(point["values"].get(v["name"]) not in v["values"] for v in sweep["vary"]):
            return f"point {i + 1} has values {point['values']} that were not varied"
    return None


# -- analysis --------------------------------------------------------------------------------

def strategies_of(sweep: dict) -> list:
    return list(sweep["config"]["strategies"])


def metrics_of(strategies) -> list:
    """The figures a sweep of ``strategies`` can be read by (``--metric``): every
    ``repeats.FIGURES`` key, and the ``PAIRED`` ratios to ipi when ipi is among them."""
    return [*FIGURES, *(PAIRED if "ipi" in strategies else ())]


def _ok_leg(point: dict, strategy: str):
    return next((leg for leg in point["legs"]
                 if leg["strategy"] == strategy and leg.get("status") == "ok"), None)


def values_at(point: dict, strategy: str, metric: str = "time"):
    """The per-sample values of figure ``metric`` of ``strategy``'s leg at ``point``
    (``repeats.figure_values``; a ratio to ipi pairs the samples of ipi's leg at the same
    point); None if that leg, or ipi's for a ratio, did not finish."""
    leg = _ok_leg(point, strategy)
    base = _ok_leg(point, "ipi") if metric in PAIRED else None
    if leg is None or (metric in PAIRED and base is None):
        return None
    return figure_values(leg, metric, base)


def series(sweep: dict, name: str, strategy: str, fixed: dict, metric: str = "time") -> list:
    """``strategy``'s figure ``metric`` against parameter ``name`` at the ``fixed`` values of
    the other parameter, in the order the sweep ran them: per point ``x`` (its value of
    ``name``), ``values`` (``values_at``), ``median`` (None without values) and ``interval``
    (``stats.median_interval``: None below two values)."""
    out = []
    for point in sweep["points"]:
        if all(point["values"][k] == v for k, v in fixed.items()):
            values = values_at(point, strategy, metric)
            out.append({"x": point["values"][name], "values": values,
                        "median": statistics.median(values) if values else None,
                        "interval": median_interval(values or [])})
    return out


def groups(sweep: dict, name: str) -> list:
    """Every combination of the other varied parameter's values (``[{}]`` if there is none)."""
    others = [v for v in sweep["vary"] if v["name"] != name]
    return [{o["name"]: value} for o in others for value in o["values"]] or [{}]


def fitted_strategies(sweep: dict, metric: str) -> list:
    """The strategies whose ``metric`` is fitted: all, but ipi for a ratio to ipi (which is 1)."""
    return [s for s in strategies_of(sweep) if not (metric in PAIRED and s == "ipi")]


def fit_sweep(sweep: dict, metric: str = "time") -> list:
    """A power law of figure ``metric`` per strategy, per numeric varied parameter, per value
    of the other one, over every sample of every point (``fit.power_law``; a leg that did not
    finish counts as one sample left out)."""
    fits = []
    for v in sweep["vary"]:
        if v["name"] not in NUMERIC:
            continue
        for fixed in groups(sweep, v["name"]):
            for strategy in fitted_strategies(sweep, metric):
                xs, ys = [], []
                for point in series(sweep, v["name"], strategy, fixed, metric):
                    values = point["values"] or [None]
                    xs += [point["x"]] * len(values)
                    ys += values
                fits.append({"strategy": strategy, "parameter": v["name"], "fixed": fixed,
                             "metric": metric, **power_law(xs, ys)})
    return fits


# -- output ----------------------------------------------------------------------------------

def _cell(point: dict, strategy: str) -> str:
    for leg in point["legs"]:
        if leg["strategy"] != strategy:
            continue
        if leg.get("status") != "ok":
            return leg.get("status", "?").upper()
        text = format_duration(leg["wall_s"])
        return text + " VIOLATED" if leg.get("safety") == "VIOLATED" else text
    return "-"


def table(sweep: dict, fmt: str) -> str:
    """A row per point: its values, then each strategy's time (or its status)."""
    names = [v["name"] for v in sweep["vary"]]
    op = sweep["config"]["op"]
    headers = [n.replace("_", "-") for n in names] + [f"{s} {op}" for s in strategies_of(sweep)]
    rows = [[format_value(n, p["values"][n]) for n in names]
            + [_cell(p, s) for s in strategies_of(sweep)] for p in sweep["points"]]
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True)


def fit_table(sweep: dict, fmt: str) -> str:
    """A row per fit; empty when nothing was fitted (only categories were varied)."""
    headers = ["strategy", "grows with", "at", "time ~"]
    rows = [[f["strategy"], f["parameter"].replace("_", "-"), point_label(f["fixed"]) or "-",
             format_exponent(f)] for f in sweep["fits"]]
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True) if rows else ""


def describe(sweep: dict) -> list:
    """Three lines: what was varied, what was fixed, and the host."""
    c, h = sweep["config"], sweep["host"]
    names = [v["name"] for v in sweep["vary"]]
    fixed = ", ".join(f"{k.replace('_', '-')} {format_value(k, c[k])}"
                      for k in PARAMETERS if k not in names)
    load = h.get("load_average")
    return [" x ".join(f"{v['name'].replace('_', '-')} in "
                       f"{', '.join(format_value(v['name'], x) for x in v['values'])}"
                       for v in sweep["vary"])
            + f": {math.prod(len(v['values']) for v in sweep['vary'])} points",
            f"{c['op']} under {', '.join(c['strategies'])}; fixed: {fixed}, seed {c['seed']}",
            f"host: {h['usable_cores']} usable cores of {h['host_cpus']}, "
            f"Python {h['python']}, up to {h['oversubscription']:g} processes per core"
            + (f", load average {load[0]:.1f} at the start" if load else "")]


def _notes(sweep: dict) -> list:
    out = [f"error: {e}" for e in sweep["errors"]]
    if sweep["unsafe_violations"]:
        out.append(f"SAFETY VIOLATION: safe strategies let walkers use freed memory "
                   f"{sweep['unsafe_violations']} times. This is a bug in lpw_mp.")
    return out


def format_terminal(sweep: dict) -> str:
    """What the sweep command prints: description, table, fits and notes."""
    parts = describe(sweep) + ["", table(sweep, "simple")]
    fits = fit_table(sweep, "simple")
    if fits:
        parts += ["", "power-law fit of the time (least squares on log-log):", fits]
    notes = _notes(sweep)
    return "\n".join(parts + ([""] + notes if notes else []))


def format_markdown(sweep: dict, plot: str = None) -> str:
    """``sweep.md``: the same as the terminal's, with the plot's file name if there is one."""
    parts = [f"# lpw_mp sweep {sweep.get('sweep_id', '')}".rstrip(), "",
             f"Status: **{sweep['status']}**, started {sweep['started']}, "
             f"finished {sweep['finished']}.", "",
             f"Command: `{' '.join(sweep['command'])}`", ""]
    parts += [f"- {line}" for line in describe(sweep)]
    parts += ["", table(sweep, "github")]
    fits = fit_table(sweep, "github")
    if fits:
        parts += ["", "Power-law fit of the time (least squares on log-log):", "", fits]
    if plot:
        parts += ["", f"![{sweep['config']['op']} time]({plot})"]
    notes = _notes(sweep)
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"
