"""Histograms of log10 |g| per seed and parameter, counted on the gradient's device.

Each parameter's gradient ``(S, *shape)`` is binned for all ``S`` seeds at once: the bin of
every entry comes from ``torch.bucketize`` against the fixed edges of
:class:`gradprobe.bench.plan.histogram_bins.HistogramConfig`, each seed's bins are offset by
``seed_row * n_counts``, and one ``torch.bincount`` counts them all. Only the ``(S, P,
n_counts)`` count array moves to the host, never the gradients.

A count vector holds the ``n_bins`` bins, then :data:`SPECIAL_COUNTS`: finite entries at or
above ``high`` (``n_over``), finite non-zero entries below ``low`` (``n_under``), exact
zeros (``n_zero``) and NaN/inf (``n_nonfinite``). It sums to the parameter's ``numel``.
``log10`` is taken in the gradient's precision (float32 for half types, whose logarithms
float32 holds exactly enough), and an entry is in bin ``i`` when
``edges[i] <= log10|g| < edges[i + 1]`` with the edges cast to that precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradprobe.bench.plan.histogram_bins import SPECIAL_COUNTS, HistogramConfig

__all__ = ["SPECIAL_COUNTS", "histogram_bytes_per_seed", "log_histograms", "param_histogram"]


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def param_histogram(grad: torch.Tensor, config: HistogramConfig) -> torch.Tensor:
    """Counts ``(S, n_counts)`` int64, on ``grad``'s device, of one gradient ``(S, *shape)``."""
    seeds, n_bins = grad.shape[0], config.n_bins
    work = _work_dtype(grad)
    magnitude = grad.reshape(seeds, -1).to(work).abs()
    edges = torch.as_tensor(config.edges, dtype=work, device=grad.device)
    # right=True: index i + 1 means edges[i] <= x < edges[i + 1]; 0 is below low (and
    # log10(0) = -inf), n_bins + 1 at or above high (and +inf).
    index = torch.bucketize(torch.log10(magnitude), edges, right=True)
    code = torch.where(index == 0, n_bins + 1, index - 1)  # n_bins: over, n_bins + 1: under
    code = torch.where(magnitude == 0, n_bins + 2, code)
    code = torch.where(torch.isfinite(magnitude), code, n_bins + 3)  # NaN and inf
    rows = torch.arange(seeds, device=grad.device).unsqueeze(1) * config.n_counts
    counts = torch.bincount((code + rows).reshape(-1), minlength=seeds * config.n_counts)
    return counts.reshape(seeds, config.n_counts)


def log_histograms(grads: Sequence[torch.Tensor], config: HistogramConfig) -> torch.Tensor:
    """Counts ``(S, P, n_counts)`` int64 on the host for gradients ``(S, *shape_p)`` in spec
    order: one parameter at a time (bounded temporaries), one transfer at the end."""
    counts = torch.stack([param_histogram(g, config) for g in grads], dim=1)
    return counts.cpu()


def histogram_bytes_per_seed(largest: int, n_params: int, itemsize: int,
                             config: HistogramConfig | None) -> int:
    """Working memory one seed adds for histograms: for the ``largest`` parameter (they are
    binned one at a time) its magnitude, logarithm, bin index and code (int64), and the
    ``n_params`` count vectors; 0 without histograms."""
    if config is None:
        return 0
    work = 8 if itemsize == 8 else 4
    return largest * (2 * work + 3 * 8) + n_params * config.n_counts * 8
