"""What each initialisation scheme draws, in PyTorch's own arithmetic and stream order.

The reference is what users write::

    torch.manual_seed(seed)
    model = MLP(...)                      # every nn.Linear draws its default init
    model.apply(init_fn)                  # non-default schemes: re-draw weights, zero biases
    x = torch.rand(batch, width)          # the input comes after

So a non-default scheme consumes the default draws first (they are overwritten), then its
own. :func:`replay` performs exactly those calls, with ``torch.nn.init`` and a per-seed
generator, on one seed's parameter views. :func:`uniform_stream` describes the same stream
as uniform runs when every draw is uniform, for the seed-vectorised generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import init

SCHEMES = {
    "kaiming_uniform": lambda w, g: init.kaiming_uniform_(w, a=0, mode="fan_in",
                                                          nonlinearity="relu", generator=g),
    "kaiming_normal": lambda w, g: init.kaiming_normal_(w, a=0, mode="fan_in",
                                                        nonlinearity="relu", generator=g),
    "xavier_uniform": lambda w, g: init.xavier_uniform_(w, gain=1.0, generator=g),
    "xavier_normal": lambda w, g: init.xavier_normal_(w, gain=1.0, generator=g),
    "orthogonal": lambda w, g: init.orthogonal_(w, gain=1, generator=g),
}


def default_weight_bound(fan_in: int) -> float:
    # nn.Linear.reset_parameters: kaiming_uniform_(w, a=sqrt(5)), computed like torch does
    # (it differs from 1 / sqrt(fan_in) in the last bit).
    gain = init.calculate_gain("leaky_relu", math.sqrt(5))
    return math.sqrt(3.0) * (gain / math.sqrt(fan_in))


def default_bias_bound(fan_in: int) -> float:
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0


def scheme_uniform_bound(scheme: str, fan_in: int, fan_out: int) -> float | None:
    """The U(-b, b) bound of a uniform scheme, as torch computes it; None if not uniform."""
    if scheme == "kaiming_uniform":
        return math.sqrt(3.0) * (init.calculate_gain("relu") / math.sqrt(fan_in))
    if scheme == "xavier_uniform":
        return math.sqrt(3.0) * (1.0 * math.sqrt(2.0 / float(fan_in + fan_out)))
    return None


def scheme_normal_std(scheme: str, fan_in: int, fan_out: int) -> float | None:
    """The N(0, std) of a normal scheme; None otherwise (orthogonal is its own case)."""
    if scheme == "kaiming_normal":
        return init.calculate_gain("relu") / math.sqrt(fan_in)
    if scheme == "xavier_normal":
        return 1.0 * math.sqrt(2.0 / float(fan_in + fan_out))
    return None


def replay(scheme: str, linears: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
           generator: torch.Generator) -> None:
    """Initialise one seed's ``(weight (out, in), bias (out,) or None)`` views in place,
    consuming ``generator`` exactly as construction plus ``model.apply`` would."""
    for weight, bias in linears:
        init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        if bias is not None:
            bound = default_bias_bound(weight.shape[1])
            init.uniform_(bias, -bound, bound, generator=generator)
    if scheme == "torch_default":
        return
    for weight, bias in linears:
        SCHEMES[scheme](weight, generator)
        if bias is not None:
            bias.zero_()


Run = tuple[int, int, float, float, tuple[int, int] | None]
"""(stream start, stream stop, low, high, (buffer start, buffer stop) or None if discarded)"""


def uniform_stream(scheme: str, linears: Sequence[tuple[int, tuple[int, int], int | None]]
                   ) -> list[Run] | None:
    """The parameter draws as uniform runs, or None when the scheme draws normals.

    ``linears`` gives per Linear layer its weight's buffer offset, ``(out, in)`` shape and
    bias offset (None without bias). Weights and biases come back as runs in stream order
    with the buffer slice each one ends up in; default draws that a scheme overwrites are
    runs with no destination (they must still be consumed).
    """
    if scheme not in ("torch_default", "kaiming_uniform", "xavier_uniform"):
        return None
    runs: list[Run] = []
    position = 0
    keep_default = scheme == "torch_default"
    for weight_at, (out, fan_in), bias_at in linears:
        bound = default_weight_bound(fan_in)
        size = out * fan_in
        runs.append((position, position + size, -bound, bound,
                     (weight_at, weight_at + size) if keep_default else None))
        position += size
        if bias_at is not None:
            bound = default_bias_bound(fan_in)
            runs.append((position, position + out, -bound, bound,
                         (bias_at, bias_at + out) if keep_default else None))
            position += out
    if not keep_default:
        for weight_at, (out, fan_in), _ in linears:
            bound = scheme_uniform_bound(scheme, fan_in, out)
            runs.append((position, position + out * fan_in, -bound, bound,
                         (weight_at, weight_at + out * fan_in)))
            position += out * fan_in
    return runs
