"""Users' own models: ``[model] factory = "package.module:function"``.

The function is called as ``function(width=..., depth=..., seed=..., **extra)`` right after
``torch.manual_seed(seed)`` and must return a ``torch.nn.Module``. ``extra`` holds the other
``[model]`` keys that the function's signature names (``residual``, ``norm``,
``norm_position``, ``out_features`` ...; all of them if it takes ``**kwargs``), always with
the config's value (the gradprobe default when the config does not set it), so they can be
swept like the MLP's. A key set to a non-default value that the function does not take is
an error: it would silently mean nothing. The module is then cast to the cell's dtype and
moved to its device.

Input: the module's attribute ``input_shape`` (one example, no batch dimension; default
``(width,)``). The batch ``(batch_size, *input_shape)`` is drawn right after construction
from the same global stream (``torch.rand`` or ``torch.randn`` as ``[data] input`` says;
fixed rows only when ``input_shape == (width,)``), exactly as for the built-in MLP; or,
with ``[data] factory``, the batch that function returns (token ids, keyword arguments,
targets: :mod:`gradprobe.bench.models.batches`).
Output: ``forward(x)`` returns a tensor, the loss is the MSE against ``[data] target``; or
as ``[data] loss`` says (cross-entropy, the model's own loss:
:mod:`gradprobe.bench.models.batches`).

Each parameter is recorded under its ``named_parameters()`` name; ``layer`` is the index of
the module that owns it among the modules that own parameters directly (in
``named_modules()`` order), ``kind`` the name within that module (``weight``,
``in_proj_bias`` ...). The module must be importable: installed, on ``PYTHONPATH``, or
in the directory gradprobe runs from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields

import numpy as np
import torch
from torch import nn

from gradprobe.bench.init.initialization import ParamSpec, fingerprint
from gradprobe.bench.models import batches
from gradprobe.bench.models.batches import Batch
from gradprobe.bench.models.reference import reference_input
from gradprobe.bench.models.user_code import (
    FACTORY_ERRORS,
    first_line,
    parameters_of,
    resolve_factory,
)
from gradprobe.bench.models.user_code import factory_error as _error
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.core.errors import ConfigError

# Keys the call always passes, or that describe how gradprobe (not the model) works.
_NOT_PASSED = ("width", "depth", "factory", "init_rng")
_DEFAULTS = {f.name: f.default for f in fields(ModelConfig)}


def factory_kwargs(model: ModelConfig, seed: int) -> dict:
    """The keyword arguments of the factory call for ``seed``."""
    function = resolve_factory(model.factory)
    named = parameters_of(function)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in named.values())
    kwargs = {"width": model.width, "depth": model.depth, "seed": seed}
    for key, value in asdict(model).items():
        if key in _NOT_PASSED:
            continue
        if key in named or takes_all:
            kwargs[key] = value
        elif value != _DEFAULTS[key]:
            raise ConfigError(f"model.{key}", f"is not a parameter of the factory "
                              f"{model.factory}, so it would mean nothing; remove it or add it "
                              "to the function's signature", value)
    return kwargs


def input_shape(module: nn.Module, model: ModelConfig) -> tuple[int, ...]:
    """``module.input_shape`` (one example, no batch dimension), default ``(width,)``."""
    shape = getattr(module, "input_shape", (model.width,))
    if not isinstance(shape, (tuple, list)) or not shape or \
            not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise _error(model.factory, f"the module's input_shape must be a tuple of positive "
                     f"integers, not {shape!r}")
    return tuple(shape)


def build(model: ModelConfig, data: DataConfig, seed: int) -> tuple[nn.Module, Batch]:
    """``torch.manual_seed(seed)``, the factory call, then the batch: the ``[data] factory``
    call (:mod:`gradprobe.bench.models.batches`) or the input draw (float32, CPU)."""
    kwargs = factory_kwargs(model, seed)
    torch.manual_seed(seed)
    try:
        module = resolve_factory(model.factory)(**kwargs)
    except ConfigError:
        raise
    except FACTORY_ERRORS as err:
        raise _error(model.factory, f"the call with {_show(kwargs)} raised "
                     f"{type(err).__name__}: {first_line(err)}") from None
    if not isinstance(module, nn.Module):
        raise _error(model.factory, f"returned {type(module).__name__}, not a torch.nn.Module")
    if data.data_factory:
        return module, batches.draw(model, data, module, seed)
    shape = input_shape(module, model)
    if isinstance(data.input, str):
        x = (torch.rand if data.input == "uniform" else torch.randn)(data.batch_size, *shape)
    elif shape != (model.width,):
        raise _error(model.factory, f"fixed [data] input rows need input_shape ({model.width},), "
                     f"the module's is {shape}")
    else:
        x = reference_input(data, model.width)
    return module, Batch(x)


def _show(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def param_specs(module: nn.Module) -> list[ParamSpec]:
    """One spec per ``named_parameters()`` entry: owning module index as ``layer``."""
    owners: dict[str, int] = {}
    specs = []
    for name, param in module.named_parameters():
        owner, _, leaf = name.rpartition(".")
        layer = owners.setdefault(owner, len(owners))
        specs.append(ParamSpec(name, tuple(param.shape), layer, leaf))
    return specs


def owner_modules(module: nn.Module) -> list[nn.Module]:
    """The modules owning parameters, in the order of :func:`param_specs`' ``layer``."""
    owners: dict[str, nn.Module] = {}
    for name, _ in module.named_parameters():
        owner = name.rpartition(".")[0]
        if owner not in owners:
            owners[owner] = module.get_submodule(owner)
    return list(owners.values())


def fingerprints(modules: Sequence[nn.Module], inputs: Sequence[Batch]) -> list[str]:
    """Per seed, :func:`gradprobe.bench.init.initialization.fingerprint` of the float32 parameters
    in
    ``named_parameters()`` order, then the batch's tensors (:meth:`Batch.tensors`): for the
    blog's MLP built this way it is the same digest as the engine's."""
    rows = [np.concatenate([*(p.detach().float().reshape(-1).numpy()
                              for p in m.parameters()),
                            *(t.detach().float().reshape(-1).numpy() for t in b.tensors())])
            for m, b in zip(modules, inputs, strict=True)]
    return fingerprint(np.stack(rows))


