"""Users' code named by import strings (``"package.module:function"``) or passed from Python.

``[model] factory`` and ``[data] factory`` both name a function this way; it is imported
(or, for a callable passed to ``gradprobe.run``, looked up in this process, see
:mod:`gradprobe.bench.models.callables`) and checked for the keyword arguments it must take,
with a one-line :class:`~gradprobe.core.errors.ConfigError` naming the key otherwise.
Importing a factory runs its module's code: a config's factories are code you trust.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable

from torch import nn

from gradprobe.bench.models.callables import is_registered_spec, registered
from gradprobe.core.errors import ConfigError

# What user code may raise that is its error, not ours: any Exception, and SystemExit (a
# sys.exit() in a factory would otherwise end gradprobe silently). Ctrl-C still stops.
FACTORY_ERRORS = (Exception, SystemExit)
REQUIRED = ("width", "depth", "seed")
DATA_REQUIRED = ("seed", "batch_size")


def factory_error(spec: str, problem: str) -> ConfigError:
    """A ConfigError naming ``[model] factory``."""
    return ConfigError("model.factory", problem, spec)


@functools.cache
def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Import ``"package.module:function"``; ConfigError naming ``[model] factory`` if the
    module cannot be imported, lacks the function, or the function cannot take
    ``width``, ``depth`` and ``seed`` keyword arguments."""
    return _resolve(spec, "model.factory", REQUIRED)


@functools.cache
def resolve_data_factory(spec: str) -> Callable:
    """The ``[data] factory`` function (:mod:`gradprobe.bench.models.batches`), checked like
    :func:`resolve_factory` for the keyword arguments ``seed`` and ``batch_size``."""
    return _resolve(spec, "data.factory", DATA_REQUIRED)


def _resolve(spec: str, key: str, required: tuple[str, ...]) -> Callable:
    if is_registered_spec(spec):  # a callable passed from Python (gradprobe.run)
        function = registered(spec)
        if function is None:
            raise ConfigError(key, "names a function passed to gradprobe.run in another "
                              "Python process; it cannot be imported from here: call "
                              "gradprobe.run from Python again, or give an importable "
                              '"package.module:function"', spec)
        return _checked(spec, key, function, spec.partition(":")[2], required)
    module_name, _, attribute = spec.partition(":")
    # Importing runs the module's code: only what is installed or on PYTHONPATH is searched,
    # never the working directory behind the user's back (README, "trust boundary").
    try:
        module = importlib.import_module(module_name)
    except FACTORY_ERRORS as err:  # ImportError, or anything the module raises importing
        hint = ("; is it installed or on PYTHONPATH? The working directory is not searched: "
                "add it with PYTHONPATH=." if isinstance(err, ModuleNotFoundError) else "")
        raise ConfigError(key, f"cannot import {module_name} ({type(err).__name__}: "
                          f"{first_line(err)}){hint}", spec) from None
    function = getattr(module, attribute, None)
    if function is None and module_name == "__main__":
        raise ConfigError(key, f"__main__ has no attribute {attribute}: __main__ is the "
                          "program that runs gradprobe (its command line, when run from a "
                          "terminal); pass the function from Python, gradprobe.run(config, "
                          "model=fn, batch=fn), or move it into an importable module", spec)
    if function is None:
        raise ConfigError(key, f"module {module_name} has no attribute {attribute}", spec)
    return _checked(spec, key, function, attribute, required)


def _checked(spec: str, key: str, function, attribute: str,
             required: tuple[str, ...]) -> Callable:
    if not callable(function):
        raise ConfigError(key, f"{attribute} is a {type(function).__name__}, not a function",
                          spec)
    missing = [name for name in required if not accepts(function, name)]
    if missing:
        raise ConfigError(key, f"{attribute} must accept keyword arguments "
                          f"{_and(required)} (missing: {', '.join(missing)})", spec)
    return function


def _and(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} and {names[-1]}"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def parameters_of(function: Callable) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # builtins without a signature: assume **kwargs
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}


def accepts(function: Callable, name: str) -> bool:
    params = parameters_of(function)
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
