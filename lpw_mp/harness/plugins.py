"""Strategies named on the command line: ``--strategy``'s list parsed into kernel profiles."""

from lpw_mp.kernel.strategies import ALIASES, STRATEGIES, canonical


def parse_strategies(text: str) -> list:
    """``"ipi,count"`` or ``"all"`` (every profile, no alias) to a list of names, in the order
    given, aliases resolved; ValueError if unknown."""
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise ValueError("no strategy given")
    out = []
    for name in names:
        name = canonical(name)
        if name == "all":
            out.extend(n for n in STRATEGIES if n not in out)
        elif name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)}, "
                             f"all; {', '.join(f'{a} = {n}' for a, n in ALIASES.items())})")
        elif name not in out:
            out.append(name)
    return out
