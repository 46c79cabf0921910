"""Switchboard core: settings, the turn pipeline, sessions, LLM engines and the CLI."""

import os

__version__ = "0.1.0"

# OpenMP worker threads (torch's and the cpu engine's kernels', one pool) sleep when idle
# instead of spinning: in a server they share the cores with the event loop and with other
# processes. Decoding beside one busy process kept ~64% of its speed alone, against ~30%
# spinning; alone it costs ~8% (2-core AMD EPYC). Set before torch is first imported; an
# OMP_WAIT_POLICY already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
