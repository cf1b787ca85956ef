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


def exits(*, width: int, depth: int, seed: int) -> nn.Module:
    raise SystemExit(3)


NOT_CALLABLE = 3


def constant(*, width: int, depth: int, seed: int) -> nn.Module:
    """Ignores the seed: every seed starts from the same weights (refused by the runner)."""
    module = nn.Linear(width, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(0.5)
    return module


class Escaped(nn.Module):
    """A parameter whose name carries a terminal escape sequence (red text)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_parameter("w\x1b[31m", nn.Parameter(torch.randn(1, width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ getattr(self, "w\x1b[31m").T


def escaped(*, width: int, depth: int, seed: int) -> nn.Module:
    return Escaped(width)
