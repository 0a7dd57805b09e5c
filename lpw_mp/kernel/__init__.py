"""The emulated kernel: the page table, the per-CPU state and IPIs, a CPU's lockless walk and
IRQ-aware loop, the coordinator's munmap, split and collapse, the serialisation strategies and the
safety checker. It imports nothing from the layers above it (harness, commands)."""
