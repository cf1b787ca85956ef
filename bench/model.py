"""The MLP as a seed-batched function: one forward pass for all seeds of a cell.

Parameters are stacked along a leading seed dimension, so layer ``l`` is one batched matmul
``(S, B, in) @ (S, in, out)`` instead of ``S`` small ones. The arithmetic per seed is the same
as ``nn.Linear`` followed by the activation, which :mod:`bench.reference` checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from bench.config import ModelConfig
from bench.initialization import ParamSpec

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def forward(model: ModelConfig, specs: Sequence[ParamSpec], params: Sequence[torch.Tensor],
            inputs: torch.Tensor) -> list[torch.Tensor]:
    """Run the network for all seeds.

    Takes ``params[i]`` of shape ``(S, *specs[i].shape)`` and ``inputs`` ``(S, B, width)``;
    returns the output of every layer, ``h_1 .. h_depth``, each ``(S, B, features)``; the last
    one is the network output. Hidden layers compute ``act(W h + b)`` (plus ``h`` when
    residual); the output layer ``W h + b`` (then ``act`` if ``output_activation``).
    """
    act = ACTIVATIONS[model.activation]
    weights: dict[int, torch.Tensor] = {}
    biases: dict[int, torch.Tensor] = {}
    for spec, param in zip(specs, params, strict=True):
        (weights if spec.kind == "weight" else biases)[spec.layer] = param
    h = inputs
    outputs = []
    for layer in range(model.depth):
        z = _linear(h, weights[layer], biases.get(layer))
        if layer < model.depth - 1:
            h = act(z) + h if model.residual else act(z)
        else:
            h = act(z) if model.output_activation else z
        outputs.append(h)
    return outputs


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return torch.bmm(h, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def loss_per_seed(output: torch.Tensor, target: float, loss: str) -> torch.Tensor:
    """``F.mse_loss(output, full_like(output, target))`` for each seed: ``(S, B, out) -> (S,)``."""
    if loss != "mse":
        raise ValueError(f"unknown loss {loss!r}")
    return (output - target).square().mean(dim=(1, 2))
