"""Before a sweep runs: every factory (model and data) is imported and tried once.

Each distinct ``[model] factory`` / ``[data] factory`` configuration is built for the first
seed, its batch drawn, run forward and through the loss, and (with ``[train]``) its first
training batch tried too, so a broken factory is a one-line
:class:`~gradprobe.core.errors.ConfigError` before anything is written, never a traceback in
the middle of a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradprobe.bench.engine.factory_training import draw_factory_task
from gradprobe.bench.models import batches
from gradprobe.bench.models.batches import Batch
from gradprobe.bench.models.factory import build
from gradprobe.bench.models.user_code import FACTORY_ERRORS, first_line
from gradprobe.bench.models.user_code import factory_error as _error
from gradprobe.bench.plan.devices import DTYPES
from gradprobe.core.errors import ConfigError


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
        module, batch = build(cell.model, cell.data, cell.seeds[0])
        if not any(True for _ in module.parameters()):
            raise _error(cell.model.factory, "the module has no parameters to measure")
        dtype = DTYPES[cell.dtype]
        batch = batch.to(torch.device("cpu"), dtype)
        try:
            with torch.no_grad():
                out = batches.call(module.to(dtype), batch.inputs)
        except FACTORY_ERRORS as err:
            hint = ("" if cell.data.data_factory else
                    "; a model that takes token ids or keyword arguments needs [data] factory "
                    "= \"module:function\" returning its batch (e.g. "
                    "gradprobe.bench.models.hf:causal_tokens) and [data] loss = \"model\"")
            raise _error(cell.model.factory, f"forward on {_describe(batch)} failed "
                         f"({_where(cell)}): {type(err).__name__}: {first_line(err)}{hint}"
                         ) from None
        try:
            batches.loss(out, batch.targets, cell.data)
        except FACTORY_ERRORS as err:
            raise ConfigError("data.loss", f"{first_line(err)} ({_where(cell)})",
                              cell.data.loss) from None
        if cell.trains:
            _check_training_task(cell, module)


def _check_training_task(cell, module: nn.Module) -> None:
    """The first seed's training batch runs through the model and the loss: a ConfigError
    naming ``[train] samples`` otherwise (e.g. a module that does not take the teacher
    task's ``(samples, width)`` inputs)."""
    train = cell.trains[0]
    task = draw_factory_task(cell, train, module, cell.seeds[0])
    task = task.to(torch.device("cpu"), DTYPES[cell.dtype])
    try:
        with torch.no_grad():
            batches.loss(batches.call(module, task.inputs), task.targets, cell.data)
    except FACTORY_ERRORS as err:
        what = ("the [data] factory's batch" if cell.data.data_factory else
                f"the teacher task (inputs ({train.samples}, {cell.model.width}), targets "
                f"({train.samples}, {cell.model.out_features}))")
        raise ConfigError("train.samples", f"training on {what} fails ({_where(cell)}): "
                          f"{type(err).__name__}: {first_line(err)}", train.samples) from None


def _describe(batch: Batch) -> str:
    """``an input of shape (1, 4)``, or the shapes of a tuple/dict of inputs."""
    if isinstance(batch.inputs, torch.Tensor):
        return f"an input of shape {tuple(batch.inputs.shape)}"
    items = (batch.inputs.items() if isinstance(batch.inputs, dict)
             else enumerate(batch.inputs))
    return "inputs " + ", ".join(f"{k}: {tuple(v.shape)}" for k, v in items
                                 if isinstance(v, torch.Tensor))


def _where(cell) -> str:
    return f"width {cell.model.width}, depth {cell.model.depth}, dtype {cell.dtype}"
