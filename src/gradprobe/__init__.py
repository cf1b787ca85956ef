"""gradprobe: how gradients flow through deep networks, measured across seeds, with statistics.

The Python API (see the README)::

    import gradprobe
    run = gradprobe.run("smoke", seeds=8)          # a preset, a path, TOML text or a Config
    analysis = run.analyze()                        # tables as pandas DataFrames
    page = run.report()                             # a self-contained HTML file
    result = gradprobe.compare("reports/baselines/smoke", run)
    result.passed, result.verdicts

Layers, bottom to top (imports only go downwards): :mod:`gradprobe.core`,
:mod:`gradprobe.bench` (the harness), :mod:`gradprobe.analysis`, then :mod:`gradprobe.api`
and :mod:`gradprobe.cli`. The API names below load on first use (PEP 562), so that
``gradprobe run`` and ``import gradprobe.bench`` do not pay for pandas, scipy and matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradprobe.core.version import __version__

if TYPE_CHECKING:
    from gradprobe.analysis.analyze import Analysis
    from gradprobe.api import Comparison, Config, Run, compare, open_run, run

# Where each public name lives; each loads on first use.
_API = {"Comparison": "gradprobe.api", "Config": "gradprobe.api", "Run": "gradprobe.api",
        "compare": "gradprobe.api", "open_run": "gradprobe.api", "run": "gradprobe.api",
        "Analysis": "gradprobe.analysis.analyze"}
__all__ = ["Analysis", "Comparison", "Config", "Run", "__version__", "compare", "open_run",
           "run"]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'gradprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
