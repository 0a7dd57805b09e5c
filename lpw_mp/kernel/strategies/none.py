"""``none``: no serialisation at all, the unsafe control the safety checker must catch."""

from lpw_mp.kernel.strategies.base import Strategy, does_nothing


class NoneStrategy(Strategy):
    """Clear and free at once, page tables too (no IPI anywhere, no RCU table free). No kernel
    ever did this: it exists to show the race is real."""

    name = "none"
    kernel = "(control) no serialisation: clear and free immediately"
    safe = False

    @does_nothing
    def serialize_against_pte_lookup(self, up) -> None:
        pass

    def tlb_remove_table(self, up, page: int) -> None:
        up.free_table(page)  # at once: no RCU either
