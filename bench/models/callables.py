"""Models passed as Python callables: ``gradprobe.run(config, model=mynet)``.

A function defined in a notebook cell or in a script's ``__main__`` has no import string
that another process could follow, so it is registered here under a spec of the same form
as ``[model] factory`` plus the hash of its source: ``"__main__:mynet#3fa2c1d09b7e"``.
The hash makes a changed function a different model, hence a different plan: a run
directory never resumes one function's sweep with another's records. Registered callables
live in this process (and in worker processes forked from it), so they run with the local
executor.

:func:`provenance` describes any factory for the manifest: module, qualified name, source
file and the SHA-256 of its source, whether it came from an import string or from Python.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from gradprobe.core.errors import UserError

MARK = "#"  # separates the import-like name from the source hash in a registered spec
_REGISTERED: dict[str, Callable] = {}


def source_sha256(function: Callable) -> str:
    """SHA-256 of the function's source text; of its bytecode and constants when the source
    cannot be found (a function typed into a bare REPL)."""
    try:
        text = inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        text = repr((code.co_code, code.co_consts, code.co_names)) if code else repr(function)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def register(function: Callable, *, what: str = "model") -> str:
    """Register ``function`` and return its spec ``"module:qualname#hash12"``."""
    if not callable(function):
        raise UserError(f"{what}= must be a callable, not {type(function).__name__}")
    module = getattr(function, "__module__", None) or "__main__"
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    spec = f"{module}:{name}{MARK}{source_sha256(function)[:12]}"
    _REGISTERED[spec] = function
    return spec


def registered(spec: str) -> Callable | None:
    """The callable registered under ``spec`` in this process, or None."""
    return _REGISTERED.get(spec)


def is_registered_spec(spec: str) -> bool:
    """Whether ``spec`` names a callable passed from Python (it has a source hash)."""
    return MARK in spec


def provenance(spec: str, function: Callable) -> dict[str, Any]:
    """What the manifest records of one factory: ``module``, ``qualname``, ``file`` (its
    source file, or None), ``source_sha256``, ``from_python`` (passed as a callable) and
    ``parameters`` (its signature's names; ``**`` for a ``**kwargs``): the report needs them
    to know whether the ``residual`` switch meant anything to the model."""
    try:
        file = inspect.getsourcefile(function)
    except TypeError:
        file = None
    return {"module": getattr(function, "__module__", None),
            "qualname": getattr(function, "__qualname__", None), "file": file,
            "source_sha256": source_sha256(function), "from_python": is_registered_spec(spec),
            "parameters": signature_names(function)}


def signature_names(function: Callable) -> list[str]:
    """The names ``function`` can be called with: its parameters, ``**`` for ``**kwargs``."""
    try:
        named = inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature: as user_code assumes
        return ["**"]
    return ["**" if p.kind is p.VAR_KEYWORD else name
            for name, p in named.items() if p.kind is not p.VAR_POSITIONAL]
