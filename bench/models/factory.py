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
fixed rows only when ``input_shape == (width,)``), exactly as for the built-in MLP.
Output: ``forward(x)`` returns a tensor; the loss is the MSE against ``[data] target``.

Each parameter is recorded under its ``named_parameters()`` name; ``layer`` is the index of
the module that owns it among the modules that own parameters directly (in
``named_modules()`` order), ``kind`` the name within that module (``weight``,
``in_proj_bias`` ...). The module must be importable: installed, on ``PYTHONPATH``, or
in the directory gradprobe runs from.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields

import numpy as np
import torch
from torch import nn

from gradprobe.bench.init.initialization import ParamSpec, fingerprint
from gradprobe.bench.models.reference import reference_input
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.devices import DTYPES
from gradprobe.core.errors import ConfigError

REQUIRED = ("width", "depth", "seed")
# Keys the call always passes, or that describe how gradprobe (not the model) works.
_NOT_PASSED = ("width", "depth", "factory", "init_rng")
_DEFAULTS = {f.name: f.default for f in fields(ModelConfig)}


# What user code may raise that is its error, not ours: any Exception, and SystemExit (a
# sys.exit() in a factory would otherwise end gradprobe silently). Ctrl-C still stops.
FACTORY_ERRORS = (Exception, SystemExit)


def _error(spec: str, problem: str) -> ConfigError:
    return ConfigError("model.factory", problem, spec)


@functools.cache
def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Import ``"package.module:function"``; ConfigError naming ``[model] factory`` if the
    module cannot be imported, lacks the function, or the function cannot take
    ``width``, ``depth`` and ``seed`` keyword arguments."""
    module_name, _, attribute = spec.partition(":")
    # Importing runs the module's code: only what is installed or on PYTHONPATH is searched,
    # never the working directory behind the user's back (README, "trust boundary").
    try:
        module = importlib.import_module(module_name)
    except FACTORY_ERRORS as err:  # ImportError, or anything the module raises importing
        hint = ("; is it installed or on PYTHONPATH? The working directory is not searched: "
                "add it with PYTHONPATH=." if isinstance(err, ModuleNotFoundError) else "")
        raise _error(spec, f"cannot import {module_name} ({type(err).__name__}: "
                     f"{first_line(err)}){hint}") from None
    function = getattr(module, attribute, None)
    if function is None:
        raise _error(spec, f"module {module_name} has no attribute {attribute}")
    if not callable(function):
        raise _error(spec, f"{attribute} is a {type(function).__name__}, not a function")
    missing = [name for name in REQUIRED if not _accepts(function, name)]
    if missing:
        raise _error(spec, f"{attribute} must accept keyword arguments width, depth and seed "
                     f"(missing: {', '.join(missing)})")
    return function


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _parameters(function: Callable) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # builtins without a signature: assume **kwargs
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}


def _accepts(function: Callable, name: str) -> bool:
    params = _parameters(function)
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def factory_kwargs(model: ModelConfig, seed: int) -> dict:
    """The keyword arguments of the factory call for ``seed``."""
    function = resolve_factory(model.factory)
    named = _parameters(function)
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


def build(model: ModelConfig, data: DataConfig, seed: int) -> tuple[nn.Module, torch.Tensor]:
    """``torch.manual_seed(seed)``, the factory call, then the input draw (float32, CPU)."""
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
    shape = input_shape(module, model)
    if isinstance(data.input, str):
        x = (torch.rand if data.input == "uniform" else torch.randn)(data.batch_size, *shape)
    elif shape != (model.width,):
        raise _error(model.factory, f"fixed [data] input rows need input_shape ({model.width},), "
                     f"the module's is {shape}")
    else:
        x = reference_input(data, model.width)
    return module, x


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


def fingerprints(modules: Sequence[nn.Module], inputs: Sequence[torch.Tensor]) -> list[str]:
    """Per seed, :func:`gradprobe.bench.init.initialization.fingerprint` of the float32 parameters
    in
    ``named_parameters()`` order, then the input: for the blog's MLP built this way it is
    the same digest as the engine's."""
    rows = [np.concatenate([*(p.detach().float().reshape(-1).numpy()
                              for p in m.parameters()), x.float().reshape(-1).numpy()])
            for m, x in zip(modules, inputs, strict=True)]
    return fingerprint(np.stack(rows))


def check_factories(cells: Sequence) -> None:
    """Build and run each distinct factory model once (first seed, no gradient), so that an
    unimportable module, a wrong return type or a failing forward is a one-line ConfigError
    before anything runs."""
    seen = set()
    for cell in cells:
        key = (cell.model, cell.data, cell.dtype)
        if not cell.model.factory or key in seen:
            continue
        seen.add(key)
        module, x = build(cell.model, cell.data, cell.seeds[0])
        if not any(True for _ in module.parameters()):
            raise _error(cell.model.factory, "the module has no parameters to measure")
        dtype = DTYPES[cell.dtype]
        try:
            with torch.no_grad():
                out = module.to(dtype)(x.to(dtype))
        except FACTORY_ERRORS as err:
            raise _error(cell.model.factory, f"forward on an input of shape "
                         f"{tuple(x.shape)} failed ({_where(cell)}): {type(err).__name__}: "
                         f"{first_line(err)}") from None
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise _error(cell.model.factory, f"forward must return a floating-point tensor, "
                         f"not {type(out).__name__} ({_where(cell)})")


def _where(cell) -> str:
    return f"width {cell.model.width}, depth {cell.model.depth}, dtype {cell.dtype}"
