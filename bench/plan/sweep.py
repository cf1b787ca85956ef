"""A whole experiment: base model and data, the sweep axes, and the cells they expand to.

A *cell* is one point of the sweep (every model, data, device and dtype value fixed) with its
seeds. Cells are named by a content hash of everything that determines their records, so a
records file can always be traced back to the exact configuration that made it.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gradprobe.bench.plan.config import (
    DATA_KEYS,
    MODEL_KEYS,
    TRAIN_KEYS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    check_bool,
    check_choice,
    check_compatible,
    check_float,
    check_int,
    check_trainable,
)
from gradprobe.bench.plan.devices import check_device_name, check_dtype_name, expand_auto
from gradprobe.bench.plan.histogram_bins import HistogramConfig
from gradprobe.bench.plan.measures import RECORDS_SCHEMA_VERSION
from gradprobe.core.errors import ConfigError, toml_repr
from gradprobe.core.hashing import short_hash

# torch's CPU generator keeps only the low 32 bits of a seed (MT19937 takes a 32-bit seed,
# see gradprobe.bench.init.mt19937), so seeds 1 and 2**32 + 1 would draw the same network and be
# counted as
# two independent replicates. Seeds are therefore confined to [0, 2**32).
MAX_SEED = 2**32 - 1
# More seeds than any analysis here needs, and few enough that the seed list, which the
# manifest and every cell file store, stays small.
MAX_SEED_COUNT = 100_000
# Keys that decide the initial parameters (which ones exist, and their values) and the input
# draw. Cells that agree on these share their initial state seed by seed (a paired design)
# and are generated once. norm and rezero add parameters (constants, no draws).
INIT_KEYS = ("depth", "width", "out_features", "bias", "init", "init_rng", "batch_size",
             "input", "norm", "rezero", "factory", "data_factory")


@dataclass(frozen=True)
class Cell:
    """One sweep point: a fully specified network, its data, device, dtype and seeds, and the
    training setups (``[train]``, one per combination of swept train keys) it is trained
    under after the measurement at initialisation."""

    model: ModelConfig
    data: DataConfig
    device: str
    dtype: str
    seeds: tuple[int, ...]
    trains: tuple[TrainConfig, ...] = ()
    # log10 |g| histograms ([histograms]); None: not computed
    histograms: HistogramConfig | None = None

    def axes(self) -> dict[str, Any]:
        """The record columns that identify this cell (``input`` as its label)."""
        values = {**asdict(self.model), **asdict(self.data)}
        values["input"] = self.data.input_label
        return {**values, "device": self.device, "dtype": self.dtype}

    @functools.cached_property  # frozen: the hash of 10,000 seeds took 0.6 ms a call
    def cell_id(self) -> str:
        """Content hash of the cell: all axes, the full fixed input, the seeds."""
        content = {**self.axes(), "input": self.data.input, "seeds": list(self.seeds)}
        if self.trains:  # untrained cells keep the ids they had before [train] existed
            content["trains"] = [asdict(t) for t in self.trains]
        if self.histograms:  # cells without histograms keep the ids they had before them
            content["histograms"] = asdict(self.histograms)
        return short_hash({"cell": content, "schema": RECORDS_SCHEMA_VERSION})

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild the cell elsewhere (a worker process, a cluster)."""
        return {"model": asdict(self.model), "data": asdict(self.data), "device": self.device,
                "dtype": self.dtype, "seeds": list(self.seeds),
                "trains": [asdict(t) for t in self.trains],
                "histograms": asdict(self.histograms) if self.histograms else None}

    @staticmethod
    def from_json(payload: dict[str, Any]) -> Cell:
        """Inverse of :meth:`to_json`; the dataclasses re-validate every value."""
        histograms = payload.get("histograms")
        return Cell(ModelConfig(**payload["model"]), DataConfig(**payload["data"]),
                    payload["device"], payload["dtype"], tuple(payload["seeds"]),
                    tuple(TrainConfig(**t) for t in payload.get("trains", [])),
                    HistogramConfig(**histograms) if histograms else None)

    @property
    def init_key(self) -> tuple:
        """Cells with equal keys start every seed from the same draw. A device-drawn state
        lives on its device, so there the device is part of the key."""
        values = {**asdict(self.model), **asdict(self.data)}
        device = self.device if self.model.init_rng == "device" else None
        return (*(values[k] for k in INIT_KEYS), device, self.seeds)


@dataclass(frozen=True)
class SweepConfig:
    """``[sweep]``: seeds, devices, dtypes and the model/data keys that vary."""

    seeds: tuple[int, ...] = tuple(range(30))
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (key, values) in file order
    device: tuple[str, ...] = ("cpu",)
    dtype: tuple[str, ...] = ("float32",)
    tf32: bool = False  # allow TF32 matmuls on CUDA (faster, ~1e-3 relative error)
    on_missing_device: str = "error"  # "error" | "skip": what to do with an absent device
    max_memory: int | None = None  # bytes of working memory per chunk (None: the default)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("sweep.seeds", "must name at least one seed", list(self.seeds))
        if len(self.seeds) > MAX_SEED_COUNT:
            raise ConfigError("sweep.seeds", f"has {len(self.seeds)} seeds; at most "
                              f"{MAX_SEED_COUNT} are allowed", has_value=False)
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise ConfigError("sweep.seeds", f"seeds must be integers in 0..{MAX_SEED} "
                                  "(torch keeps only a seed's low 32 bits)", seed)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("sweep.seeds", "has repeated seeds", list(self.seeds))
        for key, values in self.axes:
            if key not in MODEL_KEYS + DATA_KEYS + TRAIN_KEYS:
                raise ConfigError(f"sweep.{key}", "is not a [model], [data] or [train] key",
                                  list(values))
            _check_axis_values(key, values)
        for name in self.device:
            check_device_name("sweep.device", name)
        for name in self.dtype:
            check_dtype_name("sweep.dtype", name)
        for key, values in (("device", self.device), ("dtype", self.dtype)):
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"sweep.{key}", "must be a non-empty list without repeats",
                                  list(values))
        check_bool("sweep.tf32", self.tf32)
        check_choice("sweep.on_missing_device", self.on_missing_device, ("error", "skip"))
        if self.max_memory is not None:
            check_int("sweep.max_memory", self.max_memory, minimum=2**20)

    def with_seeds(self, count: int) -> SweepConfig:
        return replace(self, seeds=tuple(range(count)))

    def with_devices(self, devices: tuple[str, ...]) -> SweepConfig:
        return replace(self, device=devices)


def _check_axis_values(key: str, values: tuple[Any, ...]) -> None:
    if not values:
        raise ConfigError(f"sweep.{key}", "a sweep axis needs at least one value", [])
    target = ModelConfig if key in MODEL_KEYS else DataConfig if key in DATA_KEYS \
        else TrainConfig
    # Check each value on its own; combinations are checked when the cells are expanded.
    context = {"residual": True} if key == "rezero" else {}
    seen: dict[Any, Any] = {}
    for value in values:
        try:
            if key == "input" and isinstance(value, (list, tuple)):
                made = target(input=value, batch_size=len(value))
            else:
                made = target(**{key: value, **context})
        except ConfigError as err:
            raise ConfigError(f"sweep.{key}", err.problem, value) from None
        # Compare values as the dataclass stores them (1 and 1.0, "0.5" and 0.5 are one
        # value): a repeat would make two cells with one id, i.e. one file for two cells.
        canonical = getattr(made, key)
        if canonical in seen:
            raise ConfigError(f"sweep.{key}", f"repeats the value {toml_repr(seen[canonical])}; "
                              "list each value once", list(values))
        seen[canonical] = value


@dataclass(frozen=True)
class ReportConfig:
    """``[report]``: which cell is the headline (the blog's table) and which metric it shows;
    the training losses whose "steps to reach" the report estimates."""

    headline: tuple[tuple[str, Any], ...] | None = None  # None: the blog's cell when swept
    metric: str = "grad_mean_abs"
    target_loss: tuple[float, ...] = (0.1,)  # "steps to reach loss X" for each X ([train])

    def __post_init__(self) -> None:
        if not self.target_loss:
            raise ConfigError("report.target_loss", "needs at least one loss", [])
        object.__setattr__(self, "target_loss", tuple(
            check_float("report.target_loss", x, positive=True) for x in self.target_loss))


# Metrics that `gradprobe compare` tests: every magnitude in the records (the counts
# grad_zero/grad_nonfinite enter through zero and non-finite seeds, see
# gradprobe.analysis.compare.comparison).
COMPARE_METRICS = ("grad_mean_abs", "grad_l2", "grad_max_abs", "weight_l2", "act_rms",
                   "grad_act_rms")
DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class CompareConfig:
    """``[compare]``: how ``gradprobe compare`` judges a run against a baseline.

    ``prefer`` maps a metric to the direction that counts as better (``"higher"`` or
    ``"lower"``); a flagged change that way is *improved*, any other flagged change is
    *regressed*. ``alpha`` and ``tolerance`` override the defaults of
    :mod:`gradprobe.analysis.compare.comparison` (None: use them).
    """

    prefer: tuple[tuple[str, str], ...] = ()  # (metric, "higher" | "lower")
    alpha: float | None = None  # false discovery rate of the gate
    tolerance: float | None = None  # ratio band [1/t, t] that counts as no change; t > 1

    def __post_init__(self) -> None:
        for metric, direction in self.prefer:
            if metric not in COMPARE_METRICS:
                raise ConfigError(f"compare.prefer.{metric}", "is not a compared metric; use "
                                  f"one of {', '.join(COMPARE_METRICS)}", has_value=False)
            if direction not in DIRECTIONS:
                raise ConfigError(f"compare.prefer.{metric}", 'must be "higher" or "lower"',
                                  direction)
        if self.alpha is not None:
            alpha = check_float("compare.alpha", self.alpha)
            if not 0 < alpha < 1:
                raise ConfigError("compare.alpha", "must be between 0 and 1", self.alpha)
            object.__setattr__(self, "alpha", alpha)
        if self.tolerance is not None:
            tolerance = check_float("compare.tolerance", self.tolerance)
            if tolerance <= 1:
                raise ConfigError("compare.tolerance", "must be a ratio > 1 (1.01 means "
                                  "changes within 1% count as none)", self.tolerance)
            object.__setattr__(self, "tolerance", tolerance)


@dataclass(frozen=True)
class ExperimentConfig:
    """A parsed, validated config file."""

    name: str
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    train: TrainConfig | None = None  # [train]; None: measure at initialisation only
    # [histograms]: log10 |g| histograms per seed and parameter; None: off
    histograms: HistogramConfig | None = field(default_factory=HistogramConfig)
    source: str = "<memory>"  # the file it came from, for messages and the manifest
    text: str = ""  # the file's text, stored verbatim in the manifest

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("name", "must be a non-empty string", self.name)
        cells = self.cells()  # every combination must be valid before anything runs
        _check_distinct(cells)
        self._check_headline(cells)

    def _check_headline(self, cells: list[Cell]) -> None:
        """``[report] headline`` must pick a cell of this sweep, or the report could only
        fail after the whole sweep has run."""
        wanted = dict(self.report.headline or ())
        if not wanted or any(all(c.axes().get(k) == v for k, v in wanted.items())
                             for c in cells):
            return
        # The sweep is a Cartesian product: some value of some key is missing from it.
        for key, value in wanted.items():
            values = sorted({c.axes().get(key) for c in cells}, key=repr)
            if value not in values:
                raise ConfigError(f"report.headline.{key}", "is not a cell of this sweep; "
                                  f"pick one of {', '.join(map(toml_repr, values))}", value)

    def cells(self) -> list[Cell]:
        """Expand the sweep: the Cartesian product of the axes, then dtypes, then devices.

        Swept ``[train]`` keys do not make cells of their own: every cell is trained under
        each of their combinations (its ``trains``), and measured at initialisation once."""
        keys = [key for key, _ in self.sweep.axes if key not in TRAIN_KEYS]
        grids = [values for key, values in self.sweep.axes if key not in TRAIN_KEYS]
        trains = self.train_configs()
        cells = []
        for combo in itertools.product(*grids):
            overrides = dict(zip(keys, combo, strict=True))
            try:
                model = replace(self.model, **_pick(overrides, MODEL_KEYS))
                data = _data_with(self.data, _pick(overrides, DATA_KEYS))
                check_compatible(model, data)
                for train in trains:
                    check_trainable(model, data, train)
            except ConfigError as err:
                where = ", ".join(f"{k} = {toml_repr(v)}" for k, v in overrides.items())
                problem = f"{err.problem} (in the sweep cell {where})" if where else err.problem
                raise ConfigError(err.key, problem, err.value, has_value=err.has_value) from None
            for dtype in self.sweep.dtype:
                for device in expand_auto(self.sweep.device):
                    cells.append(Cell(model, data, device, dtype, self.sweep.seeds, trains,
                                      self.histograms))
        return cells

    def train_configs(self) -> tuple[TrainConfig, ...]:
        """``[train]`` with each combination of the swept train keys; () without [train]."""
        axes = [(key, values) for key, values in self.sweep.axes if key in TRAIN_KEYS]
        if self.train is None:
            if axes:
                key, values = axes[0]
                raise ConfigError(f"sweep.{key}", "is a [train] key, but the config has no "
                                  "[train] section", list(values))
            return ()
        return tuple(replace(self.train, **dict(zip([k for k, _ in axes], combo, strict=True)))
                     for combo in itertools.product(*(v for _, v in axes)))

    def sweep_axes(self) -> list[str]:
        """Record columns that vary across cells (model/data axes, then dtype and device)."""
        axes = [key for key, values in self.sweep.axes if len(values) > 1]
        if len(self.sweep.dtype) > 1:
            axes.append("dtype")
        if len(expand_auto(self.sweep.device)) > 1:
            axes.append("device")
        return axes


def _check_distinct(cells: list[Cell]) -> None:
    """Two cells with one id would share one records file: the second would be skipped as
    done and the run marked complete with a cell missing. Repeated axis values are refused
    earlier with a better message; this guards every other way of making equal cells."""
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.cell_id in seen:
            where = ", ".join(f"{k} = {toml_repr(v)}" for k, v in cell.axes().items())
            raise ConfigError("sweep", f"expands to the same cell twice ({where}); list each "
                              "axis value once", has_value=False)
        seen[cell.cell_id] = cell


def _pick(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in keys}


def _data_with(base: DataConfig, overrides: dict[str, Any]) -> DataConfig:
    """Apply data overrides; a fixed input sets the batch size to its row count."""
    if isinstance(overrides.get("input"), (list, tuple)) and "batch_size" not in overrides:
        overrides = {**overrides, "batch_size": len(overrides["input"])}
    return replace(base, **overrides)
