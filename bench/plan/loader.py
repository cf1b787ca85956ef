"""Read a TOML config file into a validated :class:`ExperimentConfig`.

The loader only maps TOML onto the dataclasses and checks *shape* (known keys, tables where
tables belong, lists where lists belong); the dataclasses check values. Every failure becomes
one line that names the file and the key, e.g.
``bench/configs/x.toml: [model] depth = 1: must be >= 2``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from gradprobe.bench.plan.config import (
    DATA_KEYS,
    MODEL_KEYS,
    TRAIN_KEYS,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from gradprobe.bench.plan.histogram_bins import check_histogram_table
from gradprobe.bench.plan.measures import METRICS
from gradprobe.bench.plan.sweep import (
    MAX_SEED_COUNT,
    CompareConfig,
    ExperimentConfig,
    ReportConfig,
    SweepConfig,
)
from gradprobe.core.errors import ConfigError, UserError

CONFIG_DIR = Path(__file__).parent.parent / "configs"
TOP_KEYS = ("name", "description", "model", "data", "sweep", "report", "compare", "train",
            "histograms")
HISTOGRAM_KEYS = ("enabled", "low", "high", "step")
SWEEP_KEYS = ("seeds", "device", "dtype", "tf32", "on_missing_device", "max_memory")
SWEEP_SETTINGS = ("tf32", "on_missing_device")
REPORT_KEYS = ("headline", "metric", "target_loss")
COMPARE_KEYS = ("prefer", "alpha", "tolerance")
# The [data] keys as written in TOML: the field data_factory is spelled "factory" there.
DATA_TOML_KEYS = tuple("factory" if k == "data_factory" else k for k in DATA_KEYS)

# The config text is stored verbatim in the manifest and in every cell file's metadata, and
# Arrow refuses to read back Parquet metadata beyond its Thrift limits (a 60 MB description
# wrote a cell file nothing could read). 1 MiB is far more than any sweep needs, fixed input
# rows included, and keeps each cell file's metadata small.
MAX_CONFIG_BYTES = 2**20


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path as given, or the name of a preset (``seed`` -> ``bench/configs/seed.toml``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = CONFIG_DIR / f"{path.stem}.toml"
    if path.suffix in ("", ".toml") and path.parent == Path(".") and preset.exists():
        return preset
    presets = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    raise UserError(f"{name_or_path}: no such config file (presets: {presets})")


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a config file; raise ConfigError/UserError naming file and key.

    A ``[model] factory`` is imported and tried when the sweep is planned
    (:func:`gradprobe.bench.execute.runner.plan_cells`), before anything runs; reading a
    config (here, or again from a manifest, where the user's code may not be importable)
    does not run anyone's code."""
    path = resolve_config_path(path)
    try:
        # One character past the limit is enough to refuse: never read a huge file whole.
        with path.open(encoding="utf-8") as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1)
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read config ({err})") from None
    check_config_size(text, str(path))
    source = _display_path(path)
    return parse_config(text, source=source)


def check_config_size(text: str, source: str) -> None:
    """Refuse a config over :data:`MAX_CONFIG_BYTES` (UTF-8) before anything is written."""
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise UserError(f"{source}: config is larger than {MAX_CONFIG_BYTES // 2**10} KiB; "
                        "shorten the description or the fixed input rows (it is stored in "
                        "every records file)")


def _display_path(path: Path) -> str:
    """The path as a user would write it: presets relative to the source tree, other files
    as given. Absolute machine paths would otherwise leak into published reports."""
    resolved = path.resolve()
    if resolved.is_relative_to(CONFIG_DIR.resolve()):
        return f"bench/configs/{resolved.name}"
    return str(path)


def parse_config(text: str, *, source: str = "<string>") -> ExperimentConfig:
    """Parse config ``text``; ``source`` names it in error messages and the manifest."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{source}: malformed TOML: {err}") from None
    try:
        return _build(raw, source, text)
    except ConfigError as err:
        err.source = source
        raise


def _build(raw: dict[str, Any], source: str, text: str) -> ExperimentConfig:
    _check_keys("", raw, TOP_KEYS)
    model = ModelConfig(**_section(raw, "model", MODEL_KEYS))
    data = DataConfig(**_data_section(_section(raw, "data", DATA_TOML_KEYS)))
    sweep = _sweep(_section(raw, "sweep", None))
    report = _report(_section(raw, "report", REPORT_KEYS))
    compare = _compare(_section(raw, "compare", COMPARE_KEYS))
    train = TrainConfig(**_section(raw, "train", TRAIN_KEYS)) if "train" in raw else None
    histograms = check_histogram_table(_section(raw, "histograms", HISTOGRAM_KEYS))
    name = raw.get("name", Path(source).stem)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description", "must be a string", description)
    return ExperimentConfig(name=name, description=description, model=model, data=data,
                            sweep=sweep, report=report, compare=compare, train=train,
                            histograms=histograms, source=source, text=text)


def _check_keys(section: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            dotted = f"{section}.{key}" if section else key
            raise ConfigError(dotted, f"unknown key; known keys are {', '.join(known)}",
                              has_value=False)


def _section(raw: dict[str, Any], name: str, known: tuple[str, ...] | None) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(name, f"must be a [{name}] table", table)
    if known is not None:
        _check_keys(name, table, known)
    return table


def _data_section(table: dict[str, Any]) -> dict[str, Any]:
    # [data] factory is the field data_factory ([model] factory has the column "factory").
    if "factory" in table:
        table = {**{k: v for k, v in table.items() if k != "factory"},
                 "data_factory": table["factory"]}
    # A fixed input implies its batch size; an explicit batch_size must then agree with it.
    rows = table.get("input")
    if isinstance(rows, list) and "batch_size" not in table:
        return {**table, "batch_size": len(rows)}
    return table


def _sweep(table: dict[str, Any]) -> SweepConfig:
    known = SWEEP_KEYS + MODEL_KEYS + DATA_KEYS + TRAIN_KEYS
    _check_keys("sweep", table, known)
    kwargs: dict[str, Any] = {}
    if "seeds" in table:
        kwargs["seeds"] = _seeds(table["seeds"])
    for key in ("device", "dtype"):
        if key in table:
            kwargs[key] = tuple(_as_list(f"sweep.{key}", table[key], allow_scalar=True))
    for key in SWEEP_SETTINGS:
        if key in table:
            kwargs[key] = table[key]
    if "max_memory" in table:
        kwargs["max_memory"] = parse_memory("sweep.max_memory", table["max_memory"])
    axes = [(key, tuple(_as_list(f"sweep.{key}", value, allow_scalar=False)))
            for key, value in table.items() if key not in SWEEP_KEYS]
    return SweepConfig(axes=tuple(axes), **kwargs)


def parse_memory(key: str, value: Any) -> int:
    """``"512M"``, ``"4G"``, ``"1.5G"`` or a byte count -> bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        try:
            if text and text[-1] in units:
                return int(float(text[:-1]) * units[text[-1]])
            return int(text)
        except (ValueError, OverflowError):  # OverflowError: "infG", "1e400G"
            pass
    raise ConfigError(key, 'must be a size such as "512M" or "4G"', value)


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(check_seed_count(value)))
    if isinstance(value, list):
        return tuple(value)
    raise ConfigError("sweep.seeds", "must be a count or a list of seeds", value)


def check_seed_count(count: int, what: str = "a seed count") -> int:
    """A seed count in 1..MAX_SEED_COUNT, checked before ``range(count)`` is expanded (a
    count of 10**12 would otherwise exhaust memory before any check ran)."""
    if count < 1:
        raise ConfigError("sweep.seeds", f"{what} must be >= 1", count)
    if count > MAX_SEED_COUNT:
        raise ConfigError("sweep.seeds", f"{what} must be <= {MAX_SEED_COUNT}", count)
    return count


def _as_list(key: str, value: Any, *, allow_scalar: bool) -> list[Any]:
    if isinstance(value, list):
        return value
    if allow_scalar:
        return [value]
    raise ConfigError(key, "a sweep axis must be a list of values (fixed values go in "
                      "[model] or [data])", value)


def _report(table: dict[str, Any]) -> ReportConfig:
    headline = table.get("headline")
    if headline is not None:
        if not isinstance(headline, dict) or not headline:
            raise ConfigError("report.headline", "must be a table such as "
                              "{ depth = 5, width = 10 }", headline)
        _check_keys("report.headline", headline, MODEL_KEYS + DATA_KEYS + ("device", "dtype"))
        headline = tuple(headline.items())
    metric = table.get("metric", "grad_mean_abs")
    if metric not in METRICS:
        raise ConfigError("report.metric", f"must be one of {', '.join(METRICS)}", metric)
    target = table.get("target_loss", [0.1])
    target = tuple(_as_list("report.target_loss", target, allow_scalar=True))
    return ReportConfig(headline=headline, metric=metric, target_loss=target)


def _compare(table: dict[str, Any]) -> CompareConfig:
    prefer = table.get("prefer", {})
    if not isinstance(prefer, dict):
        raise ConfigError("compare.prefer", 'must be a table such as '
                          '{ grad_mean_abs = "higher" }', prefer)
    return CompareConfig(prefer=tuple(prefer.items()), alpha=table.get("alpha"),
                         tolerance=table.get("tolerance"))


def config_with_overrides(config: ExperimentConfig, *, seeds: int | None = None,
                          devices: list[str] | None = None) -> ExperimentConfig:
    """The config with CLI overrides (``--seeds N``, ``--device D``) applied and re-validated."""
    from dataclasses import replace

    sweep = config.sweep
    try:
        if seeds is not None:
            sweep = sweep.with_seeds(check_seed_count(seeds, "--seeds"))
        if devices:
            sweep = sweep.with_devices(tuple(devices))
        return replace(config, sweep=sweep)
    except ConfigError as err:
        err.source = "command line"
        raise

