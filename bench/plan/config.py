"""What one network and its data are: the ``[model]`` and ``[data]`` sections of a config.

Both are frozen dataclasses validated at construction (pyperf's rule: an invalid value fails
where it is made, with a message that says what is wrong). Every field can also be a sweep
axis, so the field names are the TOML keys and the record column names.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from gradprobe.core.errors import ConfigError
from gradprobe.core.hashing import short_hash

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "tanh", "identity", "leaky_relu", "silu")
INITS = ("torch_default", "kaiming_uniform", "kaiming_normal", "xavier_uniform",
         "xavier_normal", "orthogonal")
INIT_RNGS = ("torch_compat", "device")
RESIDUAL_FORMS = ("post", "pre")
NAMED_SCALES = ("1/sqrt(depth)", "1/depth")
NORMS = ("none", "layernorm", "batchnorm")
NORM_POSITIONS = ("pre", "post")
RANDOM_INPUTS = ("uniform", "normal")
# mse against [data] target (or the data factory's targets); cross_entropy against the data
# factory's class targets; model: the loss the model returns (gradprobe.bench.models.batches)
LOSSES = ("mse", "cross_entropy", "model")

OPTIMIZERS = ("sgd", "adam")

FixedInput = tuple[tuple[float, ...], ...]
# "package.module:function"; a callable passed from Python (gradprobe.run(model=...)) adds
# "#<source hash>" and may have any qualified name ("Outer.build", "main.<locals>.net").
_FACTORY_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:([A-Za-z_]\w*|[\w.<>]+#[0-9a-f]{12})")


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
    computes ``h = act(W h + b) + h``; the output layer never has a skip.

    Variants: ``residual_form = "pre"`` computes ``h = W act(h) + b + h``; the branch is
    multiplied by ``residual_scale`` and, with ``rezero``, by a learnable scalar that starts
    at 0 (Bachlechner et al. 2020); ``norm`` adds a LayerNorm or BatchNorm per hidden layer,
    before the branch (``pre``: ``h + f(N(h))``) or after the sum (``post``: ``N(h + f(h))``).
    """

    depth: int = 5  # Linear layers including the output layer; >= 2
    width: int = 10  # hidden width; the input has the same width
    out_features: int = 1
    activation: str = "relu"
    output_activation: bool = False  # also apply the activation after the output layer
    bias: bool = False
    residual: bool = False
    # torch_default: nn.Linear's own reset_parameters(); the others re-initialise every
    # Linear weight after construction (model.apply) and zero its bias: kaiming_* use fan_in
    # and the ReLU gain, xavier_* gain 1, orthogonal gain 1
    init: str = "torch_default"
    init_gain: float = 1.0  # multiplies every initial Linear weight and bias
    # torch_compat: bit-identical to torch.nn on the CPU stream; device: drawn on the device
    # in blocks of seeds (fast, statistically equivalent, not bit-compatible with torch.nn)
    init_rng: str = "torch_compat"
    residual_form: str = "post"  # post: act(W h + b) + h; pre: W act(h) + b + h
    residual_scale: str = "1.0"  # multiplies the branch: a number, "1/sqrt(depth)", "1/depth"
    rezero: bool = False  # learnable branch scale initialised to 0 (needs residual)
    norm: str = "none"  # none | layernorm | batchnorm (train mode, needs batch_size > 1)
    norm_position: str = "pre"  # pre: normalise the branch input; post: normalise the sum
    # "package.module:function" returning an nn.Module (gradprobe.bench.models.factory); "" = the
    # MLP above
    factory: str = ""

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
        check_choice("model.residual_form", self.residual_form, RESIDUAL_FORMS)
        object.__setattr__(self, "residual_scale", _check_scale(self.residual_scale))
        check_bool("model.rezero", self.rezero)
        if self.rezero and not self.residual:
            raise ConfigError("model.rezero", "needs residual = true (ReZero scales the "
                              "residual branch)", self.rezero)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.norm_position", self.norm_position, NORM_POSITIONS)
        _check_factory_spec(self.factory)
        object.__setattr__(self, "factory", current_factory_name(self.factory))
        if self.factory and self.init_rng != "torch_compat":
            raise ConfigError("model.init_rng", "a factory model is built by torch.nn after "
                              'torch.manual_seed(seed); use init_rng = "torch_compat"',
                              self.init_rng)

    @property
    def branch_scale(self) -> float:
        """``residual_scale`` as a number for this depth."""
        if self.residual_scale == "1/sqrt(depth)":
            return 1.0 / math.sqrt(self.depth)
        if self.residual_scale == "1/depth":
            return 1.0 / self.depth
        return float(self.residual_scale)


# gradprobe < 0.2 installed the example models as the top-level package `bench`; configs,
# manifests and records of that time name them so (see current_factory_name).
LEGACY_MODELS = "bench.models."


def current_factory_name(spec: str) -> str:
    """``"bench.models.x:f"`` (gradprobe < 0.2) as ``"gradprobe.bench.models.x:f"``; any
    other spec unchanged. Old configs keep working and old records match new ones."""
    return f"gradprobe.{spec}" if spec.startswith(LEGACY_MODELS) else spec


def _check_factory_spec(value: Any, key: str = "model.factory") -> None:
    """``""`` or ``"package.module:function"`` (importability is checked by the loader)."""
    if not isinstance(value, str):
        raise ConfigError(key, 'must be a string "package.module:function"', value)
    if value and not _FACTORY_SPEC.fullmatch(value):
        raise ConfigError(key, 'must look like "package.module:function"', value)


def _check_scale(value: Any) -> str:
    """Canonical text of a branch scale: ``"0.5"`` for 0.5, or one of the named forms."""
    if isinstance(value, str) and value in NAMED_SCALES:
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError("model.residual_scale", "must be a number, "
                              '"1/sqrt(depth)" or "1/depth"', value) from None
    return repr(check_float("model.residual_scale", value, positive=True))


@dataclass(frozen=True)
class DataConfig:
    """One batch of inputs and a constant target, drawn after the parameters."""

    batch_size: int = 1
    input: str | FixedInput = "uniform"  # "uniform" (torch.rand), "normal" (torch.randn), rows
    target: float = 0.0  # constant regression target
    # mse | cross_entropy | model (factory models only; gradprobe.bench.models.batches)
    loss: str = "mse"
    # TOML [data] factory: "package.module:function" returning the batch
    # (gradprobe.bench.models.batches);
    # "" = draw the input as ``input`` says. Named data_factory in records and sweeps.
    data_factory: str = ""

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
        _check_factory_spec(self.data_factory, "data.factory")

    @property
    def input_label(self) -> str:
        """The record column value: ``uniform``, ``normal`` or ``fixed:<hash>`` of the rows."""
        if isinstance(self.input, str):
            return self.input
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
    if data.data_factory and not model.factory:
        raise ConfigError("data.factory", "needs a [model] factory (the built-in MLP draws "
                          "its own input); set [model] factory or remove [data] factory",
                          data.data_factory)
    if data.loss != "mse" and not model.factory:
        raise ConfigError("data.loss", 'needs a [model] factory (the built-in MLP has loss = '
                          '"mse" only)', data.loss)
    if data.data_factory and not isinstance(data.input, str):
        raise ConfigError("data.input", "fixed rows and [data] factory both say what the "
                          "input is; remove one", has_value=False)
    if model.norm == "batchnorm" and data.batch_size < 2:
        raise ConfigError("model.norm", "batchnorm normalises over the batch and needs "
                          f"data.batch_size > 1 (it is {data.batch_size})", model.norm)
    if isinstance(data.input, tuple) and len(data.input[0]) != model.width:
        raise ConfigError(
            "data.input",
            f"fixed rows have {len(data.input[0])} values but model.width is {model.width}; "
            "each row must have width values",
            has_value=False,
        )


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: full-batch training of every seed's network on a synthetic task.

    The task (:mod:`gradprobe.bench.engine.training`): a fixed random *teacher* MLP with the
    student's input
    width and ``out_features``, ``teacher_depth`` bias-free Linear layers of hidden width
    ``teacher_width`` with ReLU, He-normal hidden weights and a 1/fan_in-variance output
    layer; ``samples`` inputs drawn like ``[data] input``; targets are the teacher's outputs
    standardised per seed to mean 0 and variance 1, so a loss of 1 is what predicting the
    mean achieves. The teacher and inputs of seed ``s`` come from their own generator
    (seeded from ``s``), the same for every cell of that seed and width: training is paired.
    """

    steps: int = 200  # optimizer updates; the loss is recorded at steps 0..steps
    optimizer: str = "sgd"  # sgd | adam (torch.optim defaults otherwise)
    lr: float = 0.01  # learning rate
    momentum: float = 0.0  # SGD momentum (sgd only)
    samples: int = 64  # training inputs per seed, all in one batch (full-batch training)
    log_every: int = 10  # per-parameter gradient statistics every k steps and at the end
    teacher_depth: int = 2  # Linear layers of the teacher (1 = a linear teacher)
    teacher_width: int = 32  # hidden width of the teacher

    def __post_init__(self) -> None:
        check_int("train.steps", self.steps, minimum=1)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        object.__setattr__(self, "lr", check_float("train.lr", self.lr, positive=True))
        momentum = check_float("train.momentum", self.momentum)
        if not 0 <= momentum < 1:
            raise ConfigError("train.momentum", "must be >= 0 and < 1", self.momentum)
        if momentum and self.optimizer != "sgd":
            raise ConfigError("train.momentum", "applies to optimizer = \"sgd\" only "
                              "(Adam keeps its own moment estimates)", self.momentum)
        object.__setattr__(self, "momentum", momentum)
        check_int("train.samples", self.samples, minimum=1)
        check_int("train.log_every", self.log_every, minimum=1)
        check_int("train.teacher_depth", self.teacher_depth, minimum=1)
        check_int("train.teacher_width", self.teacher_width, minimum=1)

    @property
    def train_id(self) -> str:
        """Content hash naming this training setup in the training records."""
        return short_hash({"train": asdict(self)}, length=8)


def check_trainable(model: ModelConfig, data: DataConfig, train: TrainConfig) -> None:
    """Cross-section checks for a cell that is trained."""
    if not isinstance(data.input, str):
        raise ConfigError("data.input", "[train] draws its own training inputs and needs "
                          'input = "uniform" or "normal", not fixed rows', has_value=False)
    if model.norm == "batchnorm" and train.samples < 2:
        raise ConfigError("train.samples", "batchnorm normalises over the batch and needs "
                          "train.samples > 1", train.samples)
    if not model.factory:
        return
    # With a [data] factory its batch is the task (gradprobe.bench.engine.factory_training).
    if data.data_factory:
        for key in ("teacher_depth", "teacher_width"):
            if getattr(train, key) != getattr(TrainConfig, key):
                raise ConfigError(f"train.{key}", "means nothing with a [data] factory (its "
                                  "batch is the training task); remove it", getattr(train, key))
    elif data.loss != "mse":
        raise ConfigError("data.loss", "[train] without a [data] factory learns the MLP "
                          'teacher\'s targets and needs loss = "mse"', data.loss)


MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))
DATA_KEYS = tuple(f.name for f in fields(DataConfig))
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
