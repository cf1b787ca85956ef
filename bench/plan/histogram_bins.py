"""``[histograms]``: per-parameter histograms of log10 |gradient| on fixed bins.

What TensorBoard's and ``wandb.watch``'s users look at: the distribution of a parameter's
gradient entries, not only its mean. gradprobe bins ``log10 |g|`` of every entry into
fixed, documented bins (the same for every cell, seed, step and run, so counts add up across
seeds and compare across runs), plus four counts for what a log axis cannot hold: exact
zeros, NaN/inf, and finite values below or above the range.

The default range ``[-40, 5)`` in quarter decades (180 bins) holds the gradients of deep
plain networks in float32 (a depth-32 plain ReLU MLP's first layer reaches ~1e-30) as well
as exploding ones; float32's smallest subnormal (1.4e-45) and float64's far tails fall into
the underflow count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradprobe.bench.plan.config import check_float
from gradprobe.core.errors import ConfigError

MAX_BINS = 2000  # far more than a figure can show; keeps the per-seed buffers small
# Extra counts after the bins, in this order (gradprobe.bench.engine.histograms).
SPECIAL_COUNTS = ("n_over", "n_under", "n_zero", "n_nonfinite")


@dataclass(frozen=True)
class HistogramConfig:
    """Bins ``[low + i * step, low + (i + 1) * step)`` of ``log10 |g|``, ``i = 0..n_bins-1``."""

    low: float = -40.0  # log10 of the smallest binned |g|
    high: float = 5.0  # log10 of the upper end of the last bin (exclusive)
    step: float = 0.25  # bin width in decades

    def __post_init__(self) -> None:
        low = check_float("histograms.low", self.low)
        high = check_float("histograms.high", self.high)
        step = check_float("histograms.step", self.step, positive=True)
        if high <= low:
            raise ConfigError("histograms.high", f"must be > histograms.low ({low:g})", high)
        bins = (high - low) / step
        if abs(bins - round(bins)) > 1e-9 * max(1.0, bins):
            raise ConfigError("histograms.step", f"must divide high - low ({high - low:g}) "
                              "into whole bins", step)
        if round(bins) > MAX_BINS:
            raise ConfigError("histograms.step", f"makes {round(bins)} bins; at most "
                              f"{MAX_BINS} are allowed, use a larger step", step)
        for name, value in (("low", low), ("high", high), ("step", step)):
            object.__setattr__(self, name, value)

    @property
    def n_bins(self) -> int:
        return round((self.high - self.low) / self.step)

    @property
    def n_counts(self) -> int:
        """Length of one count vector: the bins, then :data:`SPECIAL_COUNTS`."""
        return self.n_bins + len(SPECIAL_COUNTS)

    @property
    def edges(self) -> np.ndarray:
        """``(n_bins + 1,)`` float64 bin edges in log10 units, ``low`` to ``high``."""
        return self.low + self.step * np.arange(self.n_bins + 1, dtype=np.float64)


def check_histogram_table(table: dict) -> HistogramConfig | None:
    """The ``[histograms]`` TOML table as a config, or None with ``enabled = false``."""
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("histograms.enabled", "must be true or false", enabled)
    if not enabled:
        return None
    values = {k: v for k, v in table.items() if k != "enabled"}
    return HistogramConfig(**values)


