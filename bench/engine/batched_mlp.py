"""The MLP as a seed-batched function: one forward pass for all seeds of a cell.

Parameters are stacked along a leading seed dimension, so layer ``l`` is one batched matmul
``(S, B, in) @ (S, in, out)`` instead of ``S`` small ones. The arithmetic per seed is the
same as the reference ``nn.Module`` (:mod:`gradprobe.bench.models.reference`), which tests check.

Hidden layer ``l`` with input ``h`` (see :class:`gradprobe.bench.plan.config.ModelConfig`):

* branch ``f(u)``: ``act(W u + b)`` (``post`` form, the blog's) or ``W act(u) + b`` (``pre``);
* plain: ``h' = f(h)``; residual: ``h' = h + s * a * f(h)`` with ``s`` = ``residual_scale``
  and ``a`` the ReZero scale (1 without ReZero);
* ``norm`` N placed ``pre``: ``f`` reads ``N(h)``; placed ``post``: ``h' = N(...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gradprobe.bench.init.initialization import ParamSpec
from gradprobe.bench.models.activations import ACTIVATIONS
from gradprobe.bench.plan.config import ModelConfig

NORM_EPS = 1e-5  # nn.LayerNorm's and nn.BatchNorm1d's default


def normalise(kind: str, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
              ) -> torch.Tensor:
    """LayerNorm over features, or BatchNorm (train mode) over the batch, per seed.

    ``h`` ``(S, B, W)``, ``weight`` and ``bias`` ``(S, W)``."""
    if kind == "layernorm":
        normed = F.layer_norm(h, h.shape[-1:], eps=NORM_EPS)
        return normed * weight.unsqueeze(1) + bias.unsqueeze(1)
    # BatchNorm in train mode with every (seed, feature) pair as one channel: torch's own
    # batch statistics, so the rounding matches nn.BatchNorm1d (the batch can be tiny).
    seeds, batch, width = h.shape
    channels = h.transpose(0, 1).reshape(batch, seeds * width)
    normed = F.batch_norm(channels, None, None, weight.reshape(-1), bias.reshape(-1),
                          training=True, eps=NORM_EPS)
    return normed.reshape(batch, seeds, width).transpose(0, 1)


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            taps: dict | None = None, layer: int = 0) -> torch.Tensor:
    if bias is None:
        z = torch.bmm(h, weight.transpose(1, 2))
    else:
        z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
    if taps is not None:
        taps[layer] = (h, z)
    return z


def _by_role(specs: Sequence[ParamSpec], params: Sequence[torch.Tensor]) -> dict:
    roles: dict[tuple[str, int], torch.Tensor] = {}
    for spec, param in zip(specs, params, strict=True):
        roles[(spec.kind, spec.layer)] = param
    return roles


def _hidden(model: ModelConfig, roles: dict, layer: int, h: torch.Tensor,
            taps: dict | None) -> torch.Tensor:
    act = ACTIVATIONS[model.activation]
    norm = None
    if model.norm != "none":
        norm = (roles[("norm_weight", layer)], roles[("norm_bias", layer)])
    u = normalise(model.norm, h, *norm) if norm and model.norm_position == "pre" else h
    weight, bias = roles[("weight", layer)], roles.get(("bias", layer))
    if model.residual and model.residual_form == "pre":
        branch = _linear(act(u), weight, bias, taps, layer)
    else:
        branch = act(_linear(u, weight, bias, taps, layer))
    if model.residual:
        if model.branch_scale != 1.0:
            branch = branch * model.branch_scale
        if model.rezero:
            branch = branch * roles[("alpha", layer)].view(-1, 1, 1)
        branch = h + branch
    return normalise(model.norm, branch, *norm) if norm and model.norm_position == "post" \
        else branch


def forward(model: ModelConfig, specs: Sequence[ParamSpec], params: Sequence[torch.Tensor],
            inputs: torch.Tensor, taps: dict | None = None) -> list[torch.Tensor]:
    """Run the network for all seeds.

    Takes ``params[i]`` of shape ``(S, *specs[i].shape)`` and ``inputs`` ``(S, B, width)``;
    returns the output of every layer, ``h_1 .. h_depth``, each ``(S, B, features)``; the
    last one is the network output ``W h + b`` (then ``act`` if ``output_activation``).
    ``taps``, if given, receives ``{layer: (u, z)}``: each linear map's input ``u``
    ``(S, B, in)`` and output ``z = W u + b`` ``(S, B, out)`` (for
    :mod:`gradprobe.bench.engine.outer_stats`).
    """
    roles = _by_role(specs, params)
    h = inputs
    outputs = []
    for layer in range(model.depth - 1):
        h = _hidden(model, roles, layer, h, taps)
        outputs.append(h)
    last = model.depth - 1
    y = _linear(h, roles[("weight", last)], roles.get(("bias", last)), taps, last)
    outputs.append(ACTIVATIONS[model.activation](y) if model.output_activation else y)
    return outputs


def loss_per_seed(output: torch.Tensor, target: float, loss: str) -> torch.Tensor:
    """``F.mse_loss(output, full_like(output, target))`` for each seed: ``(S, B, out) -> (S,)``."""
    if loss != "mse":
        raise ValueError(f"unknown loss {loss!r}")
    return (output - target).square().mean(dim=(1, 2))
