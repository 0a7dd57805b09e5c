"""Serialisation strategies, one module each; ``STRATEGIES`` maps a name to its class."""

from lpw_mp.kernel.strategies.count import CountStrategy
from lpw_mp.kernel.strategies.ipi import IPIStrategy
from lpw_mp.kernel.strategies.none import NoneStrategy
from lpw_mp.kernel.strategies.percpu import PerCPUStrategy
from lpw_mp.kernel.strategies.v5_8 import RCUStrategy

STRATEGIES = {cls.name: cls for cls in
              (IPIStrategy, CountStrategy, PerCPUStrategy, RCUStrategy, NoneStrategy)}


def parse_strategies(text: str) -> list:
    """``"ipi,count"`` or ``"all"`` to a list of names, in the order given; ValueError if unknown."""
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise ValueError("no strategy given")
    out = []
    for name in names:
        if name == "all":
            out.extend(n for n in STRATEGIES if n not in out)
        elif name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)}, all)")
        elif name not in out:
            out.append(name)
    return out
