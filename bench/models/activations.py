"""The activation functions ``[model] activation`` names, as the engine and the reference
``nn.Module`` both apply them (functional forms of the ``torch.nn`` modules)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "identity": lambda x: x,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01, nn.LeakyReLU's default
    "silu": F.silu,
}
