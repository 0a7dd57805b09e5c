"""Power-law fits: how a cost grows with a parameter (``y ~ c * x**k``; ``k`` is the exponent),
and how sure the fit is of ``k``.

Ordinary least squares on ``(log x, log y)`` by ``scipy.stats.linregress``, over every sample
(with ``--repeat``, every repeat of every point: a point's scatter is part of what the interval
measures), and the exponent's confidence interval from the t distribution with ``n - 2``
degrees of freedom (``n`` samples): ``k +- t * stderr(k)``. An interval that holds 0 is "no
detectable trend": the data cannot tell growth from none.

Samples where ``x`` or ``y`` is missing or not positive have no logarithm and are left out (a
``walk_rate`` of 0, a leg that did not finish or took no measurable time). numpy and scipy are
imported when a fit is made, not with this module: simulated CPU processes import lpw_mp and
must stay light."""

import math

#: The confidence of the exponent's interval.
CONFIDENCE = 0.95
#: Fewer distinct x than this give an exponent but no interval: a line through two x values
#: always fits, whatever the shape between them, so its interval would not say whether a power
#: law holds.
MIN_POINTS = 3
#: Fewer samples than this leave no degree of freedom for the scatter about the line.
MIN_SAMPLES = 3


def power_law(xs, ys, confidence: float = CONFIDENCE) -> dict:
    """Fit ``y = coefficient * x ** exponent`` to the pairs ``(xs[i], ys[i])``, one per sample
    (a point measured N times gives N pairs with the same x).

    Returns ``points`` (distinct x used), ``samples`` (pairs used), ``excluded`` (pairs left
    out: missing or not positive), ``exponent``, ``coefficient``, ``stderr`` (of the exponent),
    ``low`` and ``high`` (its interval at ``confidence``), ``confidence``, ``r2`` (of the
    log-log line), ``trend`` (``"grows"``, ``"falls"``, or ``"none detected"`` when the
    interval holds 0) and ``note`` (why the fit or its interval is missing, else None). The
    exponent is None below two distinct x; the interval, ``r2`` and ``trend`` are None below
    ``MIN_SAMPLES`` samples or ``MIN_POINTS`` distinct x. Every number is a finite float."""
    pairs = list(zip(xs, ys))
    used = [(x, y) for x, y in pairs if x is not None and y is not None and x > 0 and y > 0]
    points = len({x for x, _ in used})
    out = {"points": points, "samples": len(used), "excluded": len(pairs) - len(used),
           "exponent": None, "coefficient": None, "stderr": None, "low": None, "high": None,
           "confidence": confidence, "r2": None, "trend": None, "note": None}
    if points < 2:
        out["note"] = (f"no fit: only {points} distinct positive x" if used
                       else "no fit: no positive values")
        return out
    import numpy
    from scipy import stats

    lx = numpy.log(numpy.array([x for x, _ in used], dtype=float))
    ly = numpy.log(numpy.array([y for _, y in used], dtype=float))
    line = stats.linregress(lx, ly)
    out["exponent"] = float(line.slope)
    out["coefficient"] = math.exp(float(line.intercept))
    n = len(used)
    if n < MIN_SAMPLES or points < MIN_POINTS:
        out["note"] = (f"no interval: only {points} distinct x" if points < MIN_POINTS
                       else f"no interval: only {n} samples")
        return out
    residual = float(numpy.sum((ly - (line.intercept + line.slope * lx)) ** 2))
    total = float(numpy.sum((ly - ly.mean()) ** 2))
    # All y equal: the flat line fits them exactly (linregress says r 0 then).
    out["r2"] = 1.0 - residual / total if total > 0 else 1.0
    # A perfect fit has no scatter (linregress says nan when all y are equal).
    out["stderr"] = float(line.stderr) if residual > 0 else 0.0
    half = float(stats.t.ppf((1 + confidence) / 2, n - 2)) * out["stderr"]
    out["low"], out["high"] = out["exponent"] - half, out["exponent"] + half
    out["trend"] = ("grows" if out["low"] > 0 else "falls" if out["high"] < 0
                    else "none detected")
    if out["excluded"]:
        out["note"] = f"{out['excluded']} missing or non-positive sample(s) left out"
    return out


def format_exponent(fit: dict) -> str:
    """``x^1.02 [0.95, 1.09] (r2 0.998, 12 samples at 4 points)``; ``: no detectable trend``
    after it when the interval holds 0; ``[no interval: ...]`` in place of the interval when
    there is none; the reason alone when there is no exponent."""
    if fit["exponent"] is None:
        return fit["note"] or "-"
    text = f"x^{fit['exponent']:.2f}"
    if fit["low"] is not None:
        text += f" [{fit['low']:.2f}, {fit['high']:.2f}]"
    else:
        text += f" [{fit['note'] or 'no interval'}]"
    detail = [f"r2 {fit['r2']:.3f}"] if fit["r2"] is not None else []
    detail.append(f"{fit['samples']} samples at {fit['points']} points")
    if fit["excluded"]:
        detail.append(f"{fit['excluded']} left out")
    text += f" ({', '.join(detail)})"
    if fit["trend"] == "none detected":
        text += ": no detectable trend"
    return text

