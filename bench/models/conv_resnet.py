"""A small convolutional ResNet: ``factory = "gradprobe.bench.models.conv_resnet:conv_resnet"``.

Input ``(3, 8, 8)`` images; a 3x3 stem convolution to ``width`` channels; ``depth`` basic
blocks (He et al. 2016: conv3x3, norm, ReLU, conv3x3, norm, then ``ReLU(out + h)`` with the
skip, ``ReLU(out)`` without); global average pooling; a Linear head to ``out_features``.
The parameters are the same with and without skips, so plain and residual cells of a seed
start from identical weights (a paired comparison, as for the MLP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "batchnorm")


class BasicBlock(nn.Module):
    def __init__(self, width: int, norm: str, residual: bool):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=norm == "none")
        self.norm1 = nn.BatchNorm2d(width) if norm == "batchnorm" else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=norm == "none")
        self.norm2 = nn.BatchNorm2d(width) if norm == "batchnorm" else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(h)))))
        return F.relu(out + h) if self.residual else F.relu(out)


class ConvResNet(nn.Module):
    input_shape = (3, 8, 8)  # read by gradprobe to draw the input batch

    def __init__(self, width: int, depth: int, residual: bool, norm: str, out_features: int):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.blocks = nn.ModuleList([BasicBlock(width, norm, residual) for _ in range(depth)])
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(dim=(2, 3)))


def conv_resnet(*, width: int, depth: int, seed: int, residual: bool = False,
                norm: str = "none", out_features: int = 1) -> ConvResNet:
    """``depth`` blocks of ``width`` channels; ``norm`` is ``"none"`` or ``"batchnorm"``."""
    del seed  # the caller has called torch.manual_seed(seed)
    if norm not in NORMS:
        raise ValueError(f"conv_resnet supports norm = {' or '.join(NORMS)}, not {norm!r}")
    return ConvResNet(width, depth, residual, norm, out_features)
