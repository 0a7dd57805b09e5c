"""Kernel profiles, one module each; ``STRATEGIES`` maps a name to its class."""

from lpw_mp.kernel.strategies.count import CountStrategy
from lpw_mp.kernel.strategies.ipi import IPIStrategy
from lpw_mp.kernel.strategies.none import NoneStrategy
from lpw_mp.kernel.strategies.percpu import PerCPUStrategy
from lpw_mp.kernel.strategies.sync_mm import SyncMMStrategy
from lpw_mp.kernel.strategies.sync_one import SyncOneStrategy
from lpw_mp.kernel.strategies.v5_8 import V58Strategy

STRATEGIES = {cls.name: cls for cls in
              (IPIStrategy, CountStrategy, PerCPUStrategy, V58Strategy, SyncOneStrategy,
               SyncMMStrategy, NoneStrategy)}

#: Old names kept for one release: ``rcu`` is the v5.8 profile.
ALIASES = {"rcu": "v5.8"}


def canonical(name: str) -> str:
    """A profile's name, an alias resolved."""
    return ALIASES.get(name, name)

