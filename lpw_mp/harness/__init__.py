"""The harness: runs the emulated kernel on real processes. A machine's processes (start,
watch, stop), the configuration and the host's limits, signals, the walker phase, strategies
from outside the package (loaded here, since the kernel imports no user code), and the runner
that turns legs into a result document. It imports the kernel and results, never a command."""
