"""What a strategy of one's own imports: the base class, the walker disciplines, the
kernel's memory-model primitives and per-CPU data. README, "Bring your own strategy".

    from lpw_mp.kernel.api import Strategy, DEFINE_PER_CPU, per_cpu, WRITE_ONCE, smp_mb

Everything a strategy shares between the CPUs and the updater must be allocated in its
``__init__`` (before the processes start) and touched only through these primitives, so that
``--memory-model`` and ``lpw_mp check`` can reorder what the architecture may reorder."""

from lpw_mp.kernel.cpu import HOLD, READ_ONCE_WALKER, RECHECK, WALKERS
from lpw_mp.kernel.machine import DEFINE_PER_CPU, for_each_cpu_READ_ONCE, per_cpu
from lpw_mp.kernel.memory_model import (READ_ONCE, WRITE_ONCE, atomic_dec, atomic_dec_return,
                                        atomic_inc, atomic_inc_return, atomic_read, atomic_t,
                                        name_words, raw_smp_processor_id, smp_load_acquire,
                                        smp_mb, smp_mb__after_atomic, smp_mb__before_atomic,
                                        smp_rmb, smp_store_release, smp_wmb)
from lpw_mp.kernel.strategies.base import Strategy

__all__ = ["Strategy", "HOLD", "READ_ONCE_WALKER", "RECHECK", "WALKERS", "DEFINE_PER_CPU",
           "per_cpu", "for_each_cpu_READ_ONCE", "READ_ONCE", "WRITE_ONCE",
           "smp_store_release", "smp_load_acquire", "smp_mb", "smp_rmb", "smp_wmb",
           "smp_mb__before_atomic", "smp_mb__after_atomic", "atomic_t", "atomic_read",
           "atomic_inc", "atomic_dec", "atomic_inc_return", "atomic_dec_return",
           "raw_smp_processor_id", "name_words"]
