"""Per-seed, per-parameter statistics, reduced on the device in one pass.

The blog's number is ``param.grad.abs().mean()``; the others say whether a small mean hides
a few large entries (max), how the whole tensor scales (L2), and whether anything overflowed
or underflowed (non-finite and zero counts). The per-layer signal RMS values locate where
the signal shrinks: in the forward activations, or in the backpropagated ``dL/dh``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from gradprobe.bench.init.initialization import ParamSpec
from gradprobe.bench.plan.measures import COUNT_METRICS, LAYER_METRICS, METRICS

__all__ = ["COUNT_METRICS", "LAYER_METRICS", "METRICS", "reduce_metrics"]

# From this many values in one seed's gradient, CPU statistics take one compiled pass
# (gradprobe.bench.engine.fused_stats, float64 sums) instead of six torch reductions (float32
# sums). Per seed, never per chunk: the chunking depends on the memory budget and the load,
# and a seed's records must not (they differed by 1.6e-5 between a killed-and-resumed run and
# an uninterrupted one when a chunk's total size chose the path).
FUSED_MIN_NUMEL = 1 << 12



def _accumulation_dtype(t: torch.Tensor) -> torch.dtype:
    # Half-precision sums lose digits quickly; float32 keeps the reductions honest.
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def scaled_norm(t_abs: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """L2 norm along dim 1 of non-negative ``t_abs`` ``(S, n)`` with row maxima ``peak``.

    Squaring float32 values below ~1e-23 underflows to 0, so a plain norm of a deep plain
    network's gradients (entries ~1e-29, well inside float32's range) comes out 0. Scaling by
    the row maximum first (as LAPACK's nrm2 does) keeps every row's norm exact to rounding.
    """
    safe = torch.where((peak > 0) & torch.isfinite(peak), peak, torch.ones_like(peak))
    norm = torch.linalg.vector_norm(t_abs / safe.unsqueeze(1), dim=1) * safe
    return torch.where(torch.isinf(peak), peak, norm)  # an inf entry: the norm is inf


def safe_norm(t: torch.Tensor, peak: torch.Tensor | None = None) -> torch.Tensor:
    """L2 norm over all but the seed dimension. Rows whose norm came out 0 or inf are
    redone with :func:`scaled_norm` (a true zero or inf stays one): one pass in the common
    case, and no copy of strided views. ``peak``: the rows' maxima of ``|t|`` where known,
    so that rows of zeros (a dead ReLU layer's, common in narrow nets) are not redone."""
    norm = torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim())))
    suspect = (norm == 0) | torch.isinf(norm)
    if peak is not None:
        suspect &= peak > 0
    if bool(suspect.any()):
        rows = suspect.nonzero().squeeze(1)
        t_abs = t[rows].abs().flatten(1)
        norm[rows] = scaled_norm(t_abs, t_abs.amax(dim=1))
    return norm


def safe_mean_abs(g_abs: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Mean over all but the seed dimension of non-negative ``g_abs``, with row maxima
    ``peak``. A float32 sum of finite entries near the top of the range (~1e38) overflows to
    inf although the mean is finite; such rows are redone scaled by their maximum."""
    dims = tuple(range(1, g_abs.dim()))
    mean = g_abs.mean(dim=dims)
    overflowed = torch.isinf(mean) & torch.isfinite(peak)
    if bool(overflowed.any()):
        rows = overflowed.nonzero().squeeze(1)
        scale = peak[rows].reshape(-1, *([1] * len(dims)))
        mean[rows] = (g_abs[rows] / scale).mean(dim=dims) * peak[rows]
    return mean


def _param_stats(param: torch.Tensor, grad: torch.Tensor,
                 rows: np.ndarray | None = None) -> list[torch.Tensor]:
    """The six per-parameter columns (see :func:`reduce_metrics`); ``rows``: the gradient's
    fused row statistics when they were computed from its factors (``outer_stats``)."""
    if rows is not None:
        from gradprobe.bench.engine import fused_stats

        fused = fused_stats.stats_columns(param, rows, math.prod(grad.shape[1:]))
        if fused is not None:
            return fused
        grad = grad.materialise()  # non-finite products: the paths below define those
    if grad.device.type == "cpu" and grad[0].numel() >= FUSED_MIN_NUMEL:
        from gradprobe.bench.engine import fused_stats  # loads Numba: large gradients only

        if fused_stats.applies(param, grad):
            fused = fused_stats.param_stats(param, grad)
            return fused if fused is not None else _mixed_stats(param, grad)
    return _torch_stats(param, grad)


def _mixed_stats(param: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    """The fused statistics of the seeds whose gradient is finite, the torch path's of the
    others (NaN and inf rows, whose results the torch path defines), so that a seed's path
    never depends on the other seeds of its chunk."""
    from gradprobe.bench.engine import fused_stats

    reference = _torch_stats(param, grad)
    finite = torch.isfinite(grad.reshape(grad.shape[0], -1)).all(dim=1)
    rows = finite.nonzero().squeeze(1)
    part = fused_stats.param_stats(param[rows], grad[rows]) if len(rows) else None
    if part is None:
        return reference
    return [r.to(p.dtype).index_copy(0, rows, p) for r, p in zip(reference, part, strict=True)]


def _torch_stats(param: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    acc = _accumulation_dtype(grad)
    g = grad.to(acc)
    dims = tuple(range(1, g.dim()))  # reductions over dims, not flatten: no strided copies
    g_abs = g.abs()
    peak = g_abs.amax(dim=dims)
    w = param.detach().to(acc)
    return [
        safe_mean_abs(g_abs, peak),
        safe_norm(g, peak),
        peak,
        torch.zeros_like(peak),  # grad_nonfinite, filled by _count_nonfinite
        # Counting with an int32 accumulator is ~4x faster on CPU than the default int64.
        torch.sum(g == 0, dim=dims, dtype=torch.int32).to(acc),
        safe_norm(w),
    ]


def _outer_row_stats(grads: Sequence) -> dict[int, np.ndarray]:
    """``{index: (S, 5) row statistics}`` of the gradients held as factors
    (:class:`gradprobe.bench.engine.outer_stats.OuterGradient`), in one call that spreads
    them over the intra-op threads."""
    indices = [i for i, g in enumerate(grads) if not isinstance(g, torch.Tensor)]
    if not indices:
        return {}
    from gradprobe.bench.engine.outer_stats import row_stats  # loads Numba: when needed

    stats = row_stats([grads[i] for i in indices], torch.get_num_threads())
    return dict(zip(indices, stats, strict=True))


def _count_nonfinite(values: torch.Tensor, grads: Sequence[torch.Tensor]) -> None:
    """Fill the ``grad_nonfinite`` column where it can be non-zero.

    A NaN or inf entry makes the mean |g| non-finite, so only those (seed, parameter) pairs
    are counted: one check per chunk instead of a full pass over every gradient.
    """
    column = METRICS.index("grad_nonfinite")
    bad = ~torch.isfinite(values[:, :, 0])
    if not bool(bad.any()):
        return
    for seed, index in bad.nonzero().tolist():
        g = grads[index]
        g = (g if isinstance(g, torch.Tensor) else g.materialise())[seed]
        values[seed, index, column] = (~torch.isfinite(g)).sum().to(values.dtype)


def _rms(t: torch.Tensor) -> torch.Tensor:
    """Root mean square over all but the seed dimension, safe from underflow."""
    t = t.to(_accumulation_dtype(t))
    return safe_norm(t) / math.sqrt(math.prod(t.shape[1:]))


def _layer_rms(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """:func:`_rms` of each ``(S, B, features)`` tensor, with one call per run of equally
    shaped layers (stacked along the seed dimension): per-call overhead, not arithmetic,
    is what 2 x depth small reductions cost (0.4 ms a seed at (50, 256))."""
    out: list[torch.Tensor] = []
    start = 0
    while start < len(tensors):
        stop = start + 1
        while stop < len(tensors) and tensors[stop].shape == tensors[start].shape:
            stop += 1
        rms = _rms(torch.cat(list(tensors[start:stop]))) if stop - start > 1 else \
            _rms(tensors[start])
        out.extend(rms.split(tensors[start].shape[0]))
        start = stop
    return out


def _memory_order(t: torch.Tensor) -> tuple[int, ...]:
    """The dimensions of ``t`` after the seed dimension, outermost in memory first."""
    return tuple(sorted(range(1, t.dim()), key=lambda dim: -t.stride(dim)))


def _cat_as_laid_out(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along the seed dimension, keeping the members' memory layout (a Linear
    weight's gradient is a transposed view): reductions then read each row in the order
    they would read it alone, so their float sums are the same."""
    order = (0, *_memory_order(tensors[0]))
    inverse = tuple(order.index(dim) for dim in range(len(order)))
    return torch.cat([t.permute(order) for t in tensors]).permute(inverse)


def _stats_by_shape(params: Sequence[torch.Tensor], grads: Sequence,
                    outer: dict[int, np.ndarray]) -> list[list[torch.Tensor]]:
    """:func:`_param_stats` of every parameter. Small CPU gradients of one shape and layout
    (the hidden layers of an MLP) are reduced together, stacked along the seed dimension:
    each seed's row is reduced alone either way, and at (5, 10) the ~40 tensor operations
    a parameter costs, not its arithmetic, were most of the statistics' time."""
    stats: list[list[torch.Tensor] | None] = [None] * len(params)
    groups: dict[tuple, list[int]] = {}
    for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
        if i in outer or not isinstance(grad, torch.Tensor) or grad.device.type != "cpu" \
                or grad[0].numel() >= FUSED_MIN_NUMEL:
            stats[i] = _param_stats(param, grad, outer.get(i))
        else:
            key = (grad.shape[1:], _memory_order(grad), grad.dtype, param.shape[1:],
                   _memory_order(param), param.dtype)
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len(members) == 1:
            stats[members[0]] = _torch_stats(params[members[0]], grads[members[0]])
            continue
        columns = _torch_stats(_cat_as_laid_out([params[i] for i in members]),
                               _cat_as_laid_out([grads[i] for i in members]))
        parts = [column.split(grads[members[0]].shape[0]) for column in columns]
        for k, i in enumerate(members):
            stats[i] = [part[k] for part in parts]
    return stats


def reduce_metrics(specs: Sequence[ParamSpec], params: Sequence[torch.Tensor],
                   grads: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                   output_grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Reduce everything a chunk produced to ``(S, P, len(METRICS))`` float64 on the host.

    Takes per-parameter ``params``/``grads`` ``(S, *shape)`` in spec order, and per layer the
    outputs ``h_l`` and ``dL/dh_l`` ``(S, B, features)``. The single ``.cpu()`` at the end is
    the only device-to-host transfer of the chunk.
    """
    layer_stats = list(zip(_layer_rms(outputs), _layer_rms(output_grads), strict=True))
    outer = _outer_row_stats(grads)
    rows = []
    for spec, stats in zip(specs, _stats_by_shape(params, grads, outer), strict=True):
        act_rms, grad_act_rms = layer_stats[spec.layer]
        rows.append(torch.stack([*stats, act_rms.to(stats[0].dtype),
                                 grad_act_rms.to(stats[0].dtype)], dim=1))
    values = torch.stack(rows, dim=1)
    _count_nonfinite(values, grads)
    return values.to("cpu", torch.float64)
