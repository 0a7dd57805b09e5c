"""lpw_mp: a multiprocessing emulator of powerpc's lockless page-table walk serialisation."""

__version__ = "0.1.0"
