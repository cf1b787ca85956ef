"""Factories for tests/test_factory.py: models vmap cannot batch, and broken factories."""

from __future__ import annotations

import torch
from torch import nn


class SignGate(nn.Module):
    """``W2 relu(W1 x)``, negated when the input sums to less than 0: data-dependent control
    flow, which vmap cannot batch."""

    def __init__(self, width: int):
        super().__init__()
        self.first = nn.Linear(width, width)
        self.second = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.second(torch.relu(self.first(x)))
        return out if x.sum() > 0 else -out


def sign_gate(*, width: int, depth: int, seed: int) -> SignGate:
    return SignGate(width)


def not_a_module(*, width: int, depth: int, seed: int):
    return {"width": width}


def no_seed(width: int, depth: int) -> nn.Module:
    return nn.Linear(width, 1)


def wrong_shape(*, width: int, depth: int, seed: int) -> nn.Module:
    return nn.Linear(width + 1, 1)


def bad_input_shape(*, width: int, depth: int, seed: int) -> nn.Module:
    module = nn.Linear(width, 1)
    module.input_shape = (width, 0)
    return module


def raises(*, width: int, depth: int, seed: int) -> nn.Module:
    raise ValueError("depth must be even")


NOT_CALLABLE = 3
