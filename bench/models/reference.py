"""The blog experiment written literally with ``torch.nn``: the ground truth for the engine.

:class:`ReferenceMLP` is the blog's network (a list of ``nn.Linear``, ReLU, optional skip),
generalised to every ``[model]`` option. :func:`naive_measure` is the blog's loop: a fresh
module per seed, one forward/backward, ``.item()`` per parameter. Tests check the engine's
records against it, and ``make perf`` times the engine against it.
"""

from __future__ import annotations

import torch
from torch import nn

from gradprobe.bench.engine.batched_mlp import ACTIVATIONS
from gradprobe.bench.init.init_schemes import SCHEMES
from gradprobe.bench.plan.config import DataConfig, ModelConfig


class ReferenceMLP(nn.Module):
    """``depth`` Linear layers; hidden ones ``act(W h + b)`` (+ ``h`` when residual), with the
    variants of :class:`gradprobe.bench.plan.config.ModelConfig`, written the way a user would
    write them."""

    def __init__(self, model: ModelConfig):
        super().__init__()
        self.config = model
        hidden = [nn.Linear(model.width, model.width, bias=model.bias)
                  for _ in range(model.depth - 1)]
        output = nn.Linear(model.width, model.out_features, bias=model.bias)
        self.layers = nn.ModuleList([*hidden, output])
        if model.norm != "none":
            norm = nn.LayerNorm if model.norm == "layernorm" else nn.BatchNorm1d
            self.norms = nn.ModuleList([norm(model.width) for _ in hidden])
        if model.rezero:
            self.alphas = nn.ParameterList([nn.Parameter(torch.zeros(1)) for _ in hidden])
        if model.init != "torch_default":
            self.apply(self._reinitialise)
        if model.init_gain != 1.0:
            with torch.no_grad():
                for layer in self.layers:
                    for p in layer.parameters():
                        p.mul_(model.init_gain)

    def _reinitialise(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            SCHEMES[self.config.init](module.weight, None)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def _block(self, index: int, h: torch.Tensor) -> torch.Tensor:
        m, act = self.config, ACTIVATIONS[self.config.activation]
        norm = self.norms[index] if m.norm != "none" else None
        u = norm(h) if norm is not None and m.norm_position == "pre" else h
        layer = self.layers[index]
        branch = layer(act(u)) if m.residual and m.residual_form == "pre" else act(layer(u))
        if m.residual:
            branch = branch * m.branch_scale if m.branch_scale != 1.0 else branch
            branch = branch * self.alphas[index] if m.rezero else branch
            branch = h + branch
        return norm(branch) if norm is not None and m.norm_position == "post" else branch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns every layer's output; the last is the network output."""
        outputs = []
        for index in range(self.config.depth - 1):
            x = self._block(index, x)
            outputs.append(x)
        y = self.layers[-1](x)
        act = ACTIVATIONS[self.config.activation]
        outputs.append(act(y) if self.config.output_activation else y)
        return outputs


def reference_input(data: DataConfig, width: int) -> torch.Tensor:
    """The input drawn right after the parameters, from the global stream: ``(B, width)``."""
    if data.input == "uniform":
        return torch.rand(data.batch_size, width)
    if data.input == "normal":
        return torch.randn(data.batch_size, width)
    return torch.tensor(data.input, dtype=torch.float32)


def build_reference(model: ModelConfig, data: DataConfig, seed: int,
                    dtype: torch.dtype = torch.float32) -> tuple[ReferenceMLP, torch.Tensor]:
    """``torch.manual_seed(seed)``, build the module, draw the input; cast both to ``dtype``."""
    torch.manual_seed(seed)
    net = ReferenceMLP(model)
    x = reference_input(data, model.width)
    return net.to(dtype), x.to(dtype)


def naive_measure(model: ModelConfig, data: DataConfig, seeds, dtype=torch.float32,
                  device: str = "cpu") -> dict[int, dict[str, float]]:
    """The blog's loop: per seed, ``{param name: param.grad.abs().mean().item()}``."""
    results = {}
    for seed in seeds:
        net, x = build_reference(model, data, seed, dtype)
        net, x = net.to(device), x.to(device)
        y = net(x)[-1]
        loss = nn.functional.mse_loss(y, torch.full_like(y, data.target))
        loss.backward()
        results[seed] = {name: p.grad.abs().mean().item() for name, p in net.named_parameters()}
    return results
