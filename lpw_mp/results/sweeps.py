"""A sweep document (``sweep.json``) read back: the series it holds, the power-law fits of
them, and its terminal table and Markdown report. ``commands/sweep.py`` runs the sweep and
``plot.py`` draws it."""

import math
import statistics

from tabulate import tabulate

from lpw_mp.results.fit import CONFIDENCE, format_exponent, power_law
from lpw_mp.results.repeats import (FIGURES, PAIRED, figure, figure_text, figure_values,
                                    format_figure, interval_meaning)
from lpw_mp.results.stats import median_interval
from lpw_mp.results.tables import MARK
from lpw_mp.results.verdicts import blame, shown_names
from lpw_mp.units import format_value

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

def legs_of(sweep: dict) -> list:
    return [leg for point in sweep["points"] for leg in point["legs"]]


def strategies_of(sweep: dict) -> list:
    """The sweep's strategies by the names its legs show (a plugin's, not its spec)."""
    return shown_names(sweep["config"]["strategies"], legs_of(sweep))


def metrics_of(strategies) -> list:
    """The figures a sweep of ``strategies`` can be read by (``--metric``): every
    ``repeats.FIGURES`` key, and the ``PAIRED`` ratios to ipi when ipi is among them."""
    return [*FIGURES, *(PAIRED if "ipi" in strategies else ())]


def metric_problem(metric: str, strategies) -> str:
    """Why ``--metric metric`` cannot read a sweep of ``strategies``, naming the figures that
    can, on one line; "" when it can."""
    valid = metrics_of(strategies)
    if metric in valid:
        return ""
    why = " (a ratio to ipi needs ipi among the strategies)" if metric in PAIRED else ""
    return f"--metric {metric!r}{why}: choose from {', '.join(valid)}"


#: The figures of the walker phase, which --walker-time 0 skips.
WALKER_SIDE = ("walks_per_s", "walker_p50", "walker_p99", "walker_vs_ipi", "p99_vs_ipi")

#: The figures a leg's warnings name (``verdicts.FIGURES``, the ``?`` of a run's tables) that
#: qualify each metric. "strategy", which documents from before warnings named their figures
#: give every warning, qualifies all of them.
QUALIFIED_BY = {"time": ("time",), "per_op": ("time",), "ipi_p50": ("ipi_p50",),
                "ipi_p99": ("ipi_p99",), "walks_per_s": ("walks_per_s",),
                "walker_p50": ("walker_p50",), "walker_p99": ("walker_p99",),
                "vs_ipi": ("time",), "walker_vs_ipi": ("walker_p50",),
                "p99_vs_ipi": ("walker_p99",)}


def metric_title(sweep: dict, metric: str) -> str:
    """``munmap time`` for the time, else the figure's title (``begin+end p50``)."""
    return f"{sweep['config']['op']} time" if metric == "time" else figure(metric).title


def _ok_leg(point: dict, strategy: str):
    return next((leg for leg in point["legs"]
                 if leg["strategy"] == strategy and leg.get("status") == "ok"), None)


def warnings_about(point: dict, strategy: str, metric: str) -> list:
    """``(strategy, warning)`` of each warning of ``strategy``'s leg at ``point`` (and of
    ipi's, for a ratio to ipi) that qualifies figure ``metric`` (``QUALIFIED_BY``): what puts
    a ``?`` on it in the table and a hollow marker on the plot."""
    keys = {*QUALIFIED_BY[metric], "strategy"}
    out = []
    for name in dict.fromkeys([strategy, *(["ipi"] if metric in PAIRED else [])]):
        leg = _ok_leg(point, name) or {}
        texts = leg.get("warnings") or []
        figures = leg.get("warning_figures") or [["strategy"]] * len(texts)
        out += [(name, text) for text, named in zip(texts, figures) if keys & set(named)]
    return out


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
    ``name``), ``values`` (``values_at``), ``median`` (None without values), ``interval``
    (``stats.median_interval``: None below two values) and ``warnings``
    (``warnings_about``)."""
    out = []
    for point in sweep["points"]:
        if all(point["values"][k] == v for k, v in fixed.items()):
            values = values_at(point, strategy, metric)
            out.append({"x": point["values"][name], "values": values,
                        "median": statistics.median(values) if values else None,
                        "interval": median_interval(values or []),
                        "warnings": warnings_about(point, strategy, metric)})
    return out


def has_values(sweep: dict, metric: str) -> bool:
    """Whether any leg of the sweep has a value of figure ``metric``."""
    return any(values_at(point, strategy, metric) for point in sweep["points"]
               for strategy in strategies_of(sweep))


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

def shown(metric: str):
    """How a value of figure ``metric`` is printed, by its unit (as a run's tables do)."""
    unit = figure(metric).unit
    return lambda v: format_figure(unit, v)


def _cell(point: dict, strategy: str, metric: str) -> str:
    leg = next((leg for leg in point["legs"] if leg["strategy"] == strategy), None)
    if leg is None:
        return "-"
    if leg.get("status") != "ok":
        return leg.get("status", "?").upper()
    if metric in PAIRED and strategy == "ipi":
        return "baseline"
    values = values_at(point, strategy, metric)
    text = (figure_text(figure(metric).unit, statistics.median(values),
                        median_interval(values)) if values else "-")
    if values and warnings_about(point, strategy, metric):
        text += MARK
    return text + " VIOLATED" if leg.get("safety") == "VIOLATED" else text


def table(sweep: dict, fmt: str, metric: str = "time") -> str:
    """A row per point: its values, then each strategy's figure ``metric``, the median of its
    samples with their interval (or the leg's status), ``?`` where a run would flag it."""
    names = [v["name"] for v in sweep["vary"]]
    what = sweep["config"]["op"] if metric == "time" else figure(metric).title
    headers = [n.replace("_", "-") for n in names] + [f"{s} {what}" for s in strategies_of(sweep)]
    rows = [[format_value(n, p["values"][n]) for n in names]
            + [_cell(p, s, metric) for s in strategies_of(sweep)] for p in sweep["points"]]
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True)


def fit_table(sweep: dict, fmt: str, metric: str = "time") -> str:
    """A row per fit of figure ``metric`` (``fit_sweep``); empty when nothing was fitted (only
    categories were varied)."""
    headers = ["strategy", "grows with", "at", f"{metric} ~"]
    rows = [[f["strategy"], f["parameter"].replace("_", "-"), point_label(f["fixed"]) or "-",
             format_exponent(f)] for f in fit_sweep(sweep, metric)]
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True) if rows else ""


def fit_title(sweep: dict, metric: str) -> str:
    """What the fit table is, and how it was made."""
    return (f"power-law fit of the {metric_title(sweep, metric)} (least squares on log-log "
            f"over every sample, scipy.stats.linregress; [{CONFIDENCE:.0%} t interval of "
            f"the exponent]):")


def fixed_parameters(sweep: dict) -> list:
    """``cpus 2``, ``memory 16M``...: every sweep parameter that was not varied, with its
    value, in ``PARAMETERS`` order."""
    c, names = sweep["config"], [v["name"] for v in sweep["vary"]]
    return [f"{k.replace('_', '-')} {format_value(k, c[k])}" for k in PARAMETERS
            if k not in names]


def repeats_line(sweep: dict) -> str:
    """What each figure is over: one sample, or the median of the repeats and what its
    interval means."""
    n = sweep["config"].get("repeat", 1)
    if n == 1:
        return ("one sample per point and strategy: no intervals (--repeat 6 gives 95% "
                "intervals of the medians)")
    level = median_interval(range(n))["confidence"]
    return (f"each figure the median of {n} repeats, run interleaved; "
            f"{interval_meaning(n, level)}")


def describe(sweep: dict) -> list:
    """Four lines: what was varied, what was fixed, the host, and what a figure is over."""
    c, h = sweep["config"], sweep["host"]
    load = h.get("load_average")
    return [" x ".join(f"{v['name'].replace('_', '-')} in "
                       f"{', '.join(format_value(v['name'], x) for x in v['values'])}"
                       for v in sweep["vary"])
            + f": {math.prod(len(v['values']) for v in sweep['vary'])} points",
            f"{c['op']} under {', '.join(strategies_of(sweep))}; fixed: "
            f"{', '.join(fixed_parameters(sweep))}, seed {c['seed']}",
            f"host: {h['usable_cores']} usable cores of {h['host_cpus']}, "
            f"Python {h['python']}, up to {h['oversubscription']:g} processes per core"
            + (f", load average {load[0]:.1f} at the start" if load else ""),
            repeats_line(sweep)]


def flag_notes(sweep: dict, metric: str) -> list:
    """``[1] memory=8M ipi: only 4 IPI rounds...``: each warning behind a ``?`` of the table,
    once, in the order of the points."""
    found = {}
    for point in sweep["points"]:
        for strategy in strategies_of(sweep):
            for name, text in warnings_about(point, strategy, metric):
                found.setdefault((point_label(point["values"]), name, text), None)
    return [f"[{i}] {label} {name}: {text}" for i, (label, name, text) in enumerate(found, 1)]


def host_kinds(sweep: dict) -> dict:
    """``{kind: [point label]}`` of the kinds of host the points ran on: a kind is the CPU
    model, usable cores and memory a point's host reported (``sweep --cluster`` spreads the
    points over hosts). Points recorded without them (before lpw_mp kept them) make none."""
    kinds = {}
    for point in sweep["points"]:
        host = point.get("host") or {}
        if "usable_cores" not in host:
            continue
        kind = (f"{host.get('cpu_model') or 'unknown CPU'}, {host['usable_cores']} cores, "
                f"{(host.get('memory_bytes') or 0) / 2**30:.0f} GiB")
        kinds.setdefault(kind, []).append(point_label(point["values"]))
    return kinds


def host_note(sweep: dict):
    """The line that says a sweep's points come from different kinds of host, or None: a
    curve then joins figures measured on different hardware, while each point's ratios to
    ipi, measured on one host, stay comparable."""
    kinds = host_kinds(sweep)
    if len(kinds) < 2:
        return None
    return (f"the points ran on {len(kinds)} kinds of host ("
            + "; ".join(f"{kind}: {', '.join(labels)}" for kind, labels in kinds.items())
            + "): a curve joins figures of different hardware; the ratios to ipi within a "
              "point come from one host")


def _notes(sweep: dict, metric: str) -> list:
    out = [f"error: {e}" for e in sweep["errors"]]
    mixed = host_note(sweep)
    if mixed:
        out.append(f"warning: {mixed}")
    if sweep["unsafe_violations"]:
        out += _violations(sweep)
    flags = flag_notes(sweep, metric)
    if flags:
        out.append(f"{MARK}: a run would not trust that figure; its leg's warnings:")
        out += flags
    return out


def _violations(sweep: dict) -> list:
    """The SAFETY VIOLATION lines: one for the built-ins' violations (lpw_mp's bug), and one
    per plugin that had some, blamed on it (``verdicts.blame``)."""
    plugins = {}
    for leg in legs_of(sweep):
        if leg.get("plugin") and leg.get("safety") == "VIOLATED":
            plugins.setdefault(leg["plugin"], [leg, 0])[1] += leg["violations"]["total"]
    ours = sweep["unsafe_violations"] - sum(total for _, total in plugins.values())
    out = [f"SAFETY VIOLATION: safe strategies let walkers use freed memory {ours} times. "
           f"{blame({})}"] if ours else []
    return out + [f"SAFETY VIOLATION: {leg['strategy']} let walkers use freed memory {total} "
                  f"times. {blame(leg)}" for leg, total in plugins.values()]


def format_terminal(sweep: dict, metric: str = None) -> str:
    """What the sweep command prints: description, table and fits of figure ``metric`` (the
    sweep's own by default), and notes."""
    metric = metric or sweep["metric"]
    parts = describe(sweep) + ["", table(sweep, "simple", metric)]
    fits = fit_table(sweep, "simple", metric)
    if fits:
        parts += ["", fit_title(sweep, metric), fits]
    notes = _notes(sweep, metric)
    return "\n".join(parts + ([""] + notes if notes else []))


def format_markdown(sweep: dict, plot: str = None, metric: str = None) -> str:
    """``sweep.md``: the same as the terminal's, with the plot's file name if there is one."""
    metric = metric or sweep["metric"]
    parts = [f"# lpw_mp sweep {sweep.get('sweep_id', '')}".rstrip(), "",
             f"Status: **{sweep['status']}**, started {sweep['started']}, "
             f"finished {sweep['finished']}.", "",
             f"Command: `{' '.join(sweep['command'])}`", ""]
    parts += [f"- {line}" for line in describe(sweep)]
    parts += ["", table(sweep, "github", metric)]
    fits = fit_table(sweep, "github", metric)
    if fits:
        title = fit_title(sweep, metric)
        parts += ["", title[0].upper() + title[1:], "", fits]
    if plot:
        parts += ["", f"![{metric_title(sweep, metric)}]({plot})"]
    notes = _notes(sweep, metric)
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"
