"""Power-law fits: how a cost grows with a parameter (``time ~ c * x**k``; ``k`` is the exponent).

A least-squares line through ``(log x, log y)``. Points where ``x`` or ``y`` is not positive have
no logarithm and are left out (a ``walk_rate`` of 0, a leg that took no measurable time)."""

import math

#: Fewer points than this give an exponent, but not one to lean on.
MIN_FIT_POINTS = 3


def power_law(xs, ys) -> dict:
    """Fit ``y = coefficient * x ** exponent``.

    Returns ``n`` (points used), ``excluded`` (non-positive or missing points left out),
    ``exponent``, ``coefficient``, ``r2`` (of the log-log line; None when undefined) and ``note``
    (why the fit is missing or weak, else None). The exponent is None below two distinct x."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys)
           if x is not None and y is not None and x > 0 and y > 0]
    out = {"n": len(pts), "excluded": len(list(zip(xs, ys))) - len(pts),
           "exponent": None, "coefficient": None, "r2": None, "note": None}
    lx = [p[0] for p in pts]
    if len(set(lx)) < 2:
        out["note"] = f"no fit: {len(set(lx))} distinct positive point(s)"
        return out
    mx = sum(lx) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x in lx)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    syy = sum((y - my) ** 2 for _, y in pts)
    k = sxy / sxx
    out["exponent"] = k
    out["coefficient"] = math.exp(my - k * mx)
    # With two points the line passes through both: r2 would be 1 and say nothing.
    if len(pts) >= MIN_FIT_POINTS:
        out["r2"] = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    else:
        out["note"] = f"only {len(pts)} points: the exponent is a two-point slope"
    if out["excluded"] and out["note"] is None:
        out["note"] = f"{out['excluded']} non-positive point(s) left out"
    return out


def format_exponent(fit: dict) -> str:
    """``x^1.02 (r2 0.998)``, or the reason there is no exponent."""
    if fit["exponent"] is None:
        return fit["note"] or "-"
    text = f"x^{fit['exponent']:.2f}"
    if fit["r2"] is not None:
        text += f" (r2 {fit['r2']:.3f})"
    return text
