"""The harness (``gradprobe.bench``): plan, initial states, models, engines, records, runner.

gradprobe's version is ``gradprobe.__version__`` (one source: ``pyproject.toml``)."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning, so that a sweep beside another busy process
# (a training job, a shared CI runner) does not take CPU from it and from itself. libgomp
# reads this when torch loads, hence here, before any harness module imports torch; a value
# the user set wins. See gradprobe.bench.engine.cpu_policy.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Large CPU tensors on transparent huge pages: torch's CPU allocator then madvises blocks of
# 2 MB and more (MADV_HUGEPAGE), so a fresh draw buffer faults in 512x fewer pages (measured:
# 240 -> 60 ms of CPU time for 624 MB). torch reads it at its first allocation; a value the
# user set wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
