"""``init_rng = "device"``: initial states drawn on the device, in blocks of seeds.

The PyTorch-compatible stream needs one CPU generator per seed. For very large sweeps on an
accelerator that is the bottleneck, so this mode draws a whole block of seeds with one
device generator call per run of equally-bounded parameters: the same distributions as
``nn.Linear`` (U(-b, b) weights and biases, ``torch.rand``/``randn`` inputs), independent
across seeds, but NOT the values ``torch.nn`` would give for a seed.

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

from bench.config import DataConfig, ModelConfig
from bench.hashing import canonical_json
from bench.initialization import InitialState, _allocate, _stream, mlp_param_specs

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
           "bias": model.bias, "init": model.init, "input": data.input,
           "batch": data.batch_size, "seeds": list(seeds)}
    return int(hashlib.sha256(canonical_json(key).encode()).hexdigest()[:15], 16)


def draw_on_device(model: ModelConfig, data: DataConfig, seeds: Sequence[int],
                   device: torch.device | str) -> InitialState:
    """The initial state of ``seeds`` drawn on ``device`` block by block.

    ``seeds`` must start at a block boundary of the cell's seed list (the engine chunks in
    whole blocks), so each block sees the same generator whatever the chunking.
    """
    device = torch.device(device)
    specs = tuple(mlp_param_specs(model))
    total = sum(spec.numel for spec in specs)
    n_inputs = data.batch_size * model.width
    buffer = _allocate(len(seeds), total + n_inputs, data, total, pin=False).to(device)
    stream = _stream(specs, data, n_inputs)
    size = block_size(model, data)
    for first in range(0, len(seeds), size):
        rows = buffer[first:first + size]
        generator = torch.Generator(device=device)
        generator.manual_seed(block_seed(model, data, seeds[first:first + size]))
        for start, stop, kind, a, b in stream:
            if kind == "uniform":
                rows[:, start:stop].uniform_(a, b, generator=generator)
            else:
                rows[:, start:stop].normal_(a, b, generator=generator)
    return InitialState(tuple(seeds), specs, buffer, data.batch_size, fingerprint(buffer))


def fingerprint(buffer: torch.Tensor) -> list[str]:
    """Per seed: 16 hex digits of SHA-256 over the row's float64 sum and sum of squares."""
    sums = torch.sum(buffer, dim=1, dtype=torch.float64)
    squares = torch.linalg.vector_norm(buffer, dim=1, dtype=torch.float64) ** 2
    pairs = torch.stack([sums, squares], dim=1).cpu().numpy()
    return [hashlib.sha256(b"device-rng" + pair.tobytes()).hexdigest()[:16] for pair in pairs]
