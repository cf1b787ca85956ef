"""``init_rng = "device"``: initial states drawn on the device, in blocks of seeds.

The PyTorch-compatible stream needs one CPU generator per seed. For very large sweeps on an
accelerator that is the bottleneck, so this mode draws a whole block of seeds with one
device generator call per parameter: the same distributions as the torch_compat mode
(``nn.Linear``'s U(-b, b), the scheme's uniform, normal or orthogonal weights, zero biases
under a scheme, ``torch.rand``/``randn`` inputs), independent across seeds, but NOT the
values ``torch.nn`` would give for a seed.

Determinism: a block is a fixed slice of the seed list whose size depends only on the
network (:func:`block_size`), and its generator seed is a hash of the network, the input
and the block's seeds, so the values do not depend on the memory budget or on how seeds are
chunked. They do depend on the device type (CPU, CUDA), on PyTorch's device generator and on
the GPU's launch configuration: reproducible on the same hardware and PyTorch version.

Fingerprints in this mode hash each seed's float64 sum and sum of squares, computed on the
device (hashing every byte on the host would cost a device-to-host copy of all weights).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

from gradprobe.bench.init.init_schemes import (
    default_bias_bound,
    default_weight_bound,
    scheme_normal_std,
    scheme_uniform_bound,
)
from gradprobe.bench.init.initialization import InitialState, _constants, mlp_param_specs, offsets
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.core.hashing import canonical_json

# A block holds at most this many float32 values (256 MiB), and at most 1024 seeds.
_BLOCK_VALUES = 2**26
_MAX_BLOCK_SEEDS = 1024


def block_size(model: ModelConfig, data: DataConfig) -> int:
    """Seeds per generator block: a power of two, fixed by the network's size."""
    per_seed = sum(s.numel for s in mlp_param_specs(model)) + data.batch_size * model.width
    fits = max(1, _BLOCK_VALUES // per_seed)
    return min(_MAX_BLOCK_SEEDS, 2 ** int(math.log2(fits)))


def block_seed(model: ModelConfig, data: DataConfig, seeds: Sequence[int]) -> int:
    """63-bit generator seed for one block: a hash of what determines its draw."""
    key = {"depth": model.depth, "width": model.width, "out": model.out_features,
           "bias": model.bias, "init": model.init, "norm": model.norm, "rezero": model.rezero,
           "input": data.input, "batch": data.batch_size, "seeds": list(seeds)}
    return int(hashlib.sha256(canonical_json(key).encode()).hexdigest()[:15], 16)


def _draw_weight(view: torch.Tensor, scheme: str, generator: torch.Generator) -> None:
    """Fill ``view`` ``(S, out, in)`` with the scheme's distribution, one call per block."""
    out, fan_in = view.shape[1:]
    if scheme == "torch_default":
        bound = default_weight_bound(fan_in)
        view.uniform_(-bound, bound, generator=generator)
    elif (bound := scheme_uniform_bound(scheme, fan_in, out)) is not None:
        view.uniform_(-bound, bound, generator=generator)
    elif (std := scheme_normal_std(scheme, fan_in, out)) is not None:
        view.normal_(0.0, std, generator=generator)
    else:  # orthogonal: batched QR of Gaussian matrices, signs fixed (Mezzadri 2007)
        tall = view.transpose(1, 2) if out < fan_in else view
        gauss = torch.empty_like(tall).normal_(0.0, 1.0, generator=generator)
        q, r = torch.linalg.qr(gauss)
        q *= torch.diagonal(r, dim1=1, dim2=2).sign().unsqueeze(1)
        tall.copy_(q)


def draw_on_device(model: ModelConfig, data: DataConfig, seeds: Sequence[int],
                   device: torch.device | str) -> InitialState:
    """The initial state of ``seeds`` drawn on ``device`` block by block.

    ``seeds`` must start at a block boundary of the cell's seed list (the engine chunks in
    whole blocks), so each block sees the same generator whatever the chunking.
    """
    device = torch.device(device)
    specs = tuple(mlp_param_specs(model))
    total = sum(spec.numel for spec in specs)
    buffer = torch.empty(len(seeds), total + data.batch_size * model.width, device=device)
    _constants(model, specs, buffer, total, data)
    size = block_size(model, data)
    for first in range(0, len(seeds), size):
        rows = buffer[first:first + size]
        generator = torch.Generator(device=device)
        generator.manual_seed(block_seed(model, data, seeds[first:first + size]))
        for spec, start in zip(specs, offsets(specs), strict=True):
            view = rows[:, start:start + spec.numel]
            if spec.kind == "weight":
                _draw_weight(view.view(-1, *spec.shape), model.init, generator)
            elif spec.kind == "bias" and model.init == "torch_default":
                bound = default_bias_bound(model.width)
                view.uniform_(-bound, bound, generator=generator)
        if data.input in ("uniform", "normal"):
            draw = torch.Tensor.uniform_ if data.input == "uniform" else torch.Tensor.normal_
            draw(rows[:, total:], 0.0, 1.0, generator=generator)
    return InitialState(tuple(seeds), specs, buffer, data.batch_size, fingerprint(buffer))


def fingerprint(buffer: torch.Tensor) -> list[str]:
    """Per seed: 16 hex digits of SHA-256 over the row's float64 sum and sum of squares."""
    sums = torch.sum(buffer, dim=1, dtype=torch.float64)
    squares = torch.linalg.vector_norm(buffer, dim=1, dtype=torch.float64) ** 2
    pairs = torch.stack([sums, squares], dim=1).cpu().numpy()
    return [hashlib.sha256(b"device-rng" + pair.tobytes()).hexdigest()[:16] for pair in pairs]
