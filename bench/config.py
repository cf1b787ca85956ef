"""What one network and its data are: the ``[model]`` and ``[data]`` sections of a config.

Both are frozen dataclasses validated at construction (pyperf's rule: an invalid value fails
where it is made, with a message that says what is wrong). Every field can also be a sweep
axis, so the field names are the TOML keys and the record column names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from bench.errors import ConfigError

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "tanh", "identity")
INITS = ("torch_default",)
INIT_RNGS = ("torch_compat", "device")
RANDOM_INPUTS = ("uniform", "normal")
LOSSES = ("mse",)

FixedInput = tuple[tuple[float, ...], ...]


def check_int(key: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` if it is an integer >= ``minimum`` (TOML booleans are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, "must be an integer", value)
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}", value)
    return value


def check_float(key: str, value: Any, *, positive: bool = False) -> float:
    """Return ``value`` as a finite float; TOML integers are accepted (``init_gain = 1``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, "must be a number", value)
    if not math.isfinite(value):
        raise ConfigError(key, "must be finite", value)
    if positive and value <= 0:
        raise ConfigError(key, "must be > 0", value)
    return float(value)


def check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, "must be true or false", value)
    return value


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}", value)
    return value


@dataclass(frozen=True)
class ModelConfig:
    """A stack of ``depth`` ``nn.Linear`` layers: ``depth - 1`` hidden ``width -> width`` layers
    with ``activation``, then ``width -> out_features``. With ``residual`` every hidden layer
    computes ``h = act(W h + b) + h``; the output layer never has a skip."""

    depth: int = 5  # Linear layers including the output layer; >= 2
    width: int = 10  # hidden width; the input has the same width
    out_features: int = 1
    activation: str = "relu"
    output_activation: bool = False  # also apply the activation after the output layer
    bias: bool = False
    residual: bool = False
    init: str = "torch_default"  # nn.Linear's own reset_parameters()
    init_gain: float = 1.0  # multiplies every initial weight and bias
    # torch_compat: bit-identical to torch.nn on the CPU stream; device: drawn on the device
    # in blocks of seeds (fast, statistically equivalent, not bit-compatible with torch.nn)
    init_rng: str = "torch_compat"

    def __post_init__(self) -> None:
        check_int("model.depth", self.depth, minimum=2)
        check_int("model.width", self.width, minimum=1)
        check_int("model.out_features", self.out_features, minimum=1)
        check_choice("model.activation", self.activation, ACTIVATIONS)
        check_bool("model.output_activation", self.output_activation)
        check_bool("model.bias", self.bias)
        check_bool("model.residual", self.residual)
        check_choice("model.init", self.init, INITS)
        object.__setattr__(self, "init_gain", check_float("model.init_gain", self.init_gain))
        check_choice("model.init_rng", self.init_rng, INIT_RNGS)


@dataclass(frozen=True)
class DataConfig:
    """One batch of inputs and a constant target, drawn after the parameters."""

    batch_size: int = 1
    input: str | FixedInput = "uniform"  # "uniform" (torch.rand), "normal" (torch.randn), rows
    target: float = 0.0  # constant regression target
    loss: str = "mse"

    def __post_init__(self) -> None:
        check_int("data.batch_size", self.batch_size, minimum=1)
        object.__setattr__(self, "input", _check_input("data.input", self.input))
        if isinstance(self.input, tuple) and len(self.input) != self.batch_size:
            raise ConfigError(
                "data.input",
                f"has {len(self.input)} fixed rows but data.batch_size is {self.batch_size}; "
                "give one row per batch element",
                has_value=False,
            )
        object.__setattr__(self, "target", check_float("data.target", self.target))
        check_choice("data.loss", self.loss, LOSSES)

    @property
    def input_label(self) -> str:
        """The record column value: ``uniform``, ``normal`` or ``fixed:<hash>`` of the rows."""
        if isinstance(self.input, str):
            return self.input
        from bench.hashing import short_hash

        return "fixed:" + short_hash(self.input, length=8)


def _check_input(key: str, value: Any) -> str | FixedInput:
    if isinstance(value, str):
        return check_choice(key, value, RANDOM_INPUTS)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(key, 'must be "uniform", "normal" or a list of rows', value)
    rows = []
    for row in value:
        if not isinstance(row, (list, tuple)) or not row:
            raise ConfigError(key, "fixed input rows must be non-empty lists of numbers", value)
        rows.append(tuple(check_float(key, v) for v in row))
    if len({len(r) for r in rows}) != 1:
        raise ConfigError(key, "fixed input rows must all have the same length", value)
    return tuple(rows)


def check_compatible(model: ModelConfig, data: DataConfig) -> None:
    """Cross-section checks that neither dataclass can make alone."""
    if isinstance(data.input, tuple) and len(data.input[0]) != model.width:
        raise ConfigError(
            "data.input",
            f"fixed rows have {len(data.input[0])} values but model.width is {model.width}; "
            "each row must have width values",
            has_value=False,
        )


MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))
DATA_KEYS = tuple(f.name for f in fields(DataConfig))
