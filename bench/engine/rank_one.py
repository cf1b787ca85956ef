"""Rank-one weight gradients as elementwise products, without autograd's batched matmul.

With one input row a seed (``data.batch_size = 1``, the blog's setup) the gradient of a
linear layer's weight, for ``z = W u``, is the outer product ``G[i, j] = delta[i] * u[j]``
with ``delta = dL/dz``. Autograd computes it as ``torch.bmm(delta^T, u)``: a batched matmul
with an inner size of one, each entry one product rounded once and added to a zero. On the
CPU that matmul is slow for small layers (at width 10, 1,250 seeds: 411 us, against 78 us
for the elementwise product; the whole backward pass of (5, 10) spent half its time there).

The engine therefore asks autograd for ``delta`` (see ``batched._gradients``) and forms the
product itself, in autograd's memory layout. Each entry has the same bits as the matmul's,
with one exception that no statistic reads: a product that is a negative zero stays
``-0.0`` here, where the matmul's ``0 + (-0.0)`` gives ``+0.0`` (every statistic and
histogram takes ``|g|``). Half-precision matmuls round differently on the CPU, so only
float32 and float64 qualify (``tests/test_rank_one.py``).
"""

from __future__ import annotations

import torch

EXACT_DTYPES = (torch.float32, torch.float64)


def applies(weight: torch.Tensor, inputs: torch.Tensor) -> bool:
    """Whether the gradient of ``weight`` ``(S, out, in)`` for layer input ``inputs``
    ``(S, B, in)`` is rank one (``B == 1``) and its product is the matmul's, bit for bit
    (a CPU tensor of float32 or float64)."""
    return (inputs.shape[1] == 1 and weight.dim() == 3 and weight.device.type == "cpu"
            and weight.dtype in EXACT_DTYPES and inputs.dtype == weight.dtype)


def gradient(delta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The weight gradient ``(S, out, in)`` from ``delta`` ``(S, 1, out)`` and ``inputs``
    ``(S, 1, in)``, laid out as autograd's: a transposed view of an ``(S, in, out)`` tensor
    (the layer computes ``u @ W^T``). The statistics then read it in the same order and their
    float sums come out bit for bit the same."""
    return (inputs.transpose(1, 2) * delta).transpose(1, 2)
