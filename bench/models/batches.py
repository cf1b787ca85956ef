"""A factory model's batch and loss: ``[data] factory`` and ``[data] loss``.

``[data] factory = "package.module:function"`` is called as
``function(seed=..., batch_size=..., **extra)`` right after the model is built (after
``torch.manual_seed(seed)`` and the model factory), so it draws from the same global stream
as the model did. ``extra`` holds those of ``model`` (the built ``nn.Module``, e.g. to read a
vocabulary size), ``width``, ``depth`` and ``out_features`` that the signature names (all of
them if it takes ``**kwargs``). It returns the model's inputs, or a :class:`Batch` of inputs
and targets. Inputs are a tensor (``module(x)``), a tuple (``module(*x)``) or a dict of
keyword arguments (``module(**x)``); integer tensors (token ids) are kept as they are,
floating ones are cast to the cell's dtype. Without a data factory the input is the
``torch.rand``/``torch.randn`` draw of :mod:`gradprobe.bench.models.factory`.

``[data] loss`` (one seed's scalar loss from the forward's output):

* ``"mse"``: ``F.mse_loss(output, targets)``, or against the constant ``[data] target``
  when there are no targets;
* ``"cross_entropy"``: ``F.cross_entropy`` of the logits ``(..., C)`` against class
  indices ``(...)`` (``-100`` is ignored, as in torch and Hugging Face);
* ``"model"``: the loss the model computes itself: its output if that is a one-element
  tensor, else the output's ``.loss`` (as Hugging Face models return when given labels).

For ``mse`` and ``cross_entropy`` an output with a ``.logits`` attribute (Hugging Face) is
replaced by its logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from gradprobe.bench.models.user_code import (
    FACTORY_ERRORS,
    accepts,
    first_line,
    resolve_data_factory,
)
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.core.errors import ConfigError

Inputs = torch.Tensor | tuple | dict


@dataclass(frozen=True)
class Batch:
    """One seed's batch: ``inputs`` (tensor, tuple of positional or dict of keyword
    arguments of ``forward``) and optional ``targets`` (a tensor), validated here."""

    inputs: Inputs
    targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, (torch.Tensor, tuple, dict)):
            raise TypeError(f"inputs must be a tensor, a tuple or a dict, not "
                            f"{type(self.inputs).__name__}")
        leaves = tree_flatten(self.inputs)[0]
        if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
            raise TypeError("inputs must hold tensors only (and at least one)")
        if self.targets is not None and not isinstance(self.targets, torch.Tensor):
            raise TypeError(f"targets must be a tensor, not {type(self.targets).__name__}")

    def tensors(self) -> list[torch.Tensor]:
        """The input tensors (``tree_flatten`` order), then the targets if any."""
        leaves = tree_flatten(self.inputs)[0]
        return [*leaves, self.targets] if self.targets is not None else leaves

    def to(self, device: torch.device, dtype: torch.dtype) -> Batch:
        """Every tensor on ``device``; floating ones cast to ``dtype``, integers kept."""
        return Batch(*(tree_map(lambda t: _cast(t, device, dtype), part)
                       for part in (self.inputs, self.targets)))


def _cast(t: torch.Tensor | None, device, dtype) -> torch.Tensor | None:
    if t is None:
        return None
    return t.to(device, dtype) if t.is_floating_point() else t.to(device)


def stack(batches: list[Batch]) -> Batch:
    """Seeds stacked along a new first dimension, leaf by leaf: ``(S, ...)``."""
    inputs = tree_map(lambda *ts: torch.stack(ts), *(b.inputs for b in batches))
    targets = None if batches[0].targets is None else torch.stack([b.targets for b in batches])
    return Batch(inputs, targets)


def call(module: Callable, inputs: Inputs) -> Any:
    """``module(x)``, ``module(*x)`` or ``module(**x)`` as the inputs' type says."""
    if isinstance(inputs, dict):
        return module(**inputs)
    if isinstance(inputs, tuple):
        return module(*inputs)
    return module(inputs)


def data_factory_kwargs(function: Callable, model: ModelConfig, module: nn.Module,
                        data: DataConfig, seed: int) -> dict:
    """The keyword arguments of the data factory's call (see the module docstring)."""
    extra = {"model": module, "width": model.width, "depth": model.depth,
             "out_features": model.out_features}
    kwargs = {"seed": seed, "batch_size": data.batch_size}
    kwargs.update({k: v for k, v in extra.items() if accepts(function, k)})
    return kwargs


def draw(model: ModelConfig, data: DataConfig, module: nn.Module, seed: int) -> Batch:
    """Call ``[data] factory`` (see the module docstring); a ConfigError naming it if the
    call fails or returns something that is not a batch."""
    function = resolve_data_factory(data.data_factory)
    kwargs = data_factory_kwargs(function, model, module, data, seed)
    try:
        made = function(**kwargs)
        return made if isinstance(made, Batch) else Batch(made)
    except FACTORY_ERRORS as err:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "model")
        raise ConfigError("data.factory", f"the call with {shown} failed: "
                          f"{type(err).__name__}: {first_line(err)}",
                          data.data_factory) from None


def _logits(output: Any) -> Any:
    logits = getattr(output, "logits", None)
    return output if logits is None else logits


def loss(output: Any, targets: torch.Tensor | None, data: DataConfig) -> torch.Tensor:
    """One seed's scalar loss (see the module docstring); ValueError if the output or the
    targets do not fit ``data.loss``."""
    if data.loss == "model":
        value = output if isinstance(output, torch.Tensor) else getattr(output, "loss", None)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError("loss = \"model\" needs a forward that returns a one-element "
                             f"tensor or an object with a .loss tensor, not "
                             f"{type(output).__name__}")
        return value.reshape(())
    output = _logits(output)
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise ValueError(f"loss = \"{data.loss}\" needs a forward that returns a "
                         f"floating-point tensor (or .logits), not {type(output).__name__}")
    if data.loss == "mse":
        if targets is None:
            return (output - data.target).square().mean()
        if targets.shape != output.shape:  # broadcasting would silently mean another loss
            raise ValueError(f"loss = \"mse\" needs targets of the output's shape "
                             f"{tuple(output.shape)}, not {tuple(targets.shape)}")
        return F.mse_loss(output, targets.to(output.dtype))
    if targets is None or targets.is_floating_point():
        raise ValueError("loss = \"cross_entropy\" needs integer class targets from the "
                         "[data] factory (return Batch(inputs, targets))")
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), targets.reshape(-1))
