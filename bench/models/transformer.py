"""Transformer blocks, pre-LN or post-LN: ``factory =
"gradprobe.bench.models.transformer:transformer"``.

Input: sequences of 8 vectors of size ``width`` (no embedding layer). ``depth`` blocks, each
self-attention (``nn.MultiheadAttention``, head size about 16) and a GELU MLP of hidden size
``4 * width``, then mean pooling over the sequence and a Linear head to ``out_features``.

* ``norm_position = "post"`` (Vaswani et al. 2017): ``h = LN(h + f(h))`` per sub-layer.
* ``norm_position = "pre"`` (Xiong et al. 2020): ``h = h + f(LN(h))`` per sub-layer, and a
  final LayerNorm before the head.
* ``residual = false`` drops the skips (``h = f(LN(h))`` or ``h = LN(f(h))``): the ablation
  that gradprobe's plain/residual comparison is about.

The random weights are drawn in the same order in every variant (LayerNorm draws nothing),
so plain and residual cells of a seed start from the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

SEQUENCE = 8
HEAD_SIZE = 16


def head_count(width: int) -> int:
    """The most heads of size >= about ``HEAD_SIZE`` that divide ``width``."""
    return next(h for h in range(max(1, width // HEAD_SIZE), 0, -1) if width % h == 0)


class Block(nn.Module):
    def __init__(self, width: int, norm_position: str, residual: bool):
        super().__init__()
        self.pre, self.residual = norm_position == "pre", residual
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, head_count(width), batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def _attend(self, h: torch.Tensor) -> torch.Tensor:
        return self.attn(h, h, h, need_weights=False)[0]

    def _sublayer(self, h: torch.Tensor, f, norm: nn.Module) -> torch.Tensor:
        skip = h if self.residual else 0
        if self.pre:
            return skip + f(norm(h))
        return norm(skip + f(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self._sublayer(h, self._attend, self.norm1)
        return self._sublayer(h, self.mlp, self.norm2)


class Transformer(nn.Module):
    def __init__(self, width: int, depth: int, norm_position: str, residual: bool,
                 out_features: int):
        super().__init__()
        self.input_shape = (SEQUENCE, width)  # read by gradprobe to draw the input batch
        self.blocks = nn.ModuleList([Block(width, norm_position, residual)
                                     for _ in range(depth)])
        self.final_norm = nn.LayerNorm(width) if norm_position == "pre" else nn.Identity()
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        return self.head(self.final_norm(h).mean(dim=1))


def transformer(*, width: int, depth: int, seed: int, norm_position: str = "pre",
                residual: bool = False, out_features: int = 1) -> Transformer:
    """``depth`` blocks of model size ``width``; ``norm_position`` is ``"pre"`` or ``"post"``.
    The defaults are gradprobe's (which always passes these keys): set ``residual = true``
    in the config for the usual transformer."""
    del seed  # the caller has called torch.manual_seed(seed)
    return Transformer(width, depth, norm_position, residual, out_features)
