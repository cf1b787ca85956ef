"""Raw records: the documented schema round-trips through Parquet, versions are enforced."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.plan.loader import load_config
from gradprobe.bench.store import records
from gradprobe.core.errors import UserError


def test_pandas_reads_the_records_directory(smoke_run):
    frame = pd.read_parquet(smoke_run / "records")
    config = load_config("smoke")
    n_params = sum(c.model.depth for c in config.cells())
    assert len(frame) == n_params * len(config.sweep.seeds)
    for column in ("depth", "width", "residual", "device", "dtype", "seed", "param", "layer",
                   "kind", "numel", "init_fingerprint", *METRICS, "loss_value"):
        assert column in frame.columns
    assert list(frame.columns) == records.SCHEMA.names
    assert not frame.duplicated(["cell_id", "seed", "param"]).any()
    first = frame[(frame["depth"] == 3) & (frame["seed"] == 0) & ~frame["residual"]
                  & (frame["width"] == 8)]
    assert first["param"].tolist() == ["layers.0.weight", "layers.1.weight", "layers.2.weight"]
    assert first["numel"].tolist() == [64, 64, 8]
    assert set(frame["kind"]) == {"weight"}


def test_read_records_matches_pandas(smoke_run):
    ours = records.read_records(smoke_run).sort_values(["cell_id", "seed", "param"])
    theirs = pd.read_parquet(smoke_run / "records").sort_values(["cell_id", "seed", "param"])
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True),
                                  check_dtype=False, check_categorical=False)


def test_each_file_carries_version_cell_and_manifest(smoke_run):
    path = records.record_files(smoke_run)[0]
    meta = pq.read_schema(path).metadata
    assert int(meta[records.META_VERSION]) == records.SCHEMA_VERSION
    cell = json.loads(meta[records.META_CELL])
    assert path.name == f"cell-{cell['cell_id']}.parquet"
    manifest = json.loads(meta[records.META_MANIFEST])
    assert manifest["config"]["name"] == "smoke"


def _copy_run(smoke_run, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(smoke_run, target)
    return target


def test_newer_schema_is_refused(smoke_run, tmp_path):
    run = _copy_run(smoke_run, tmp_path)
    path = records.record_files(run)[0]
    table = pq.read_table(path)
    meta = {**table.schema.metadata, records.META_VERSION: b"99"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(UserError, match="schema version 99 is newer"):
        records.read_records(run)


def test_corrupt_file_is_a_clear_error(smoke_run, tmp_path):
    run = _copy_run(smoke_run, tmp_path)
    path = records.record_files(run)[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match=f"{path.name}: not a readable Parquet file"):
        records.read_records(run)


def test_foreign_parquet_is_refused(smoke_run, tmp_path):
    run = _copy_run(smoke_run, tmp_path)
    pq.write_table(pa.table({"x": [1]}), run / "records" / "cell-foreign.parquet")
    with pytest.raises(UserError, match=r"without gradprobe\.schema_version"):
        records.read_records(run)


def test_missing_or_empty_run_directory(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        records.read_records(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no records found"):
        records.read_records(tmp_path / "empty")


def test_hidden_temporary_files_are_ignored(smoke_run, tmp_path):
    run = _copy_run(smoke_run, tmp_path)
    (run / "records" / ".cell-x.parquet.123.tmp").write_bytes(b"partial")
    assert len(records.read_records(run)) == len(pd.read_parquet(run / "records"))


def _embedded_manifest(run_dir, cell_id: str) -> bytes:
    return pq.read_schema(records.cell_path(run_dir, cell_id)).metadata[records.META_MANIFEST]


def test_cell_file_size_does_not_grow_with_the_cell_count(tmp_path):
    # Regression (issue 14, item 1): the local executor embedded the whole manifest, cell
    # list included, in every cell file, so storage grew with the square of the cell count.
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import parse_config

    base = 'name = "grow"\n[model]\ndepth = 2\nwidth = 2\n[sweep]\nseeds = 2\n'
    small = parse_config(base + "init_gain = [1.0, 2.0]\n")
    large = parse_config(base + "init_gain = [1.0, 2.0]\nwidth = [2, 3, 4, 5, 6, 7, 8, 9]\n"
                         "target = [0.0, 1.0, 2.0]\n")
    run_sweep(small, out=tmp_path / "small", progress=False)
    run_sweep(large, out=tmp_path / "large", progress=False)
    shared = small.cells()[0].cell_id
    assert shared in {c.cell_id for c in large.cells()}
    grown = len(_embedded_manifest(tmp_path / "large", shared)) - len(
        _embedded_manifest(tmp_path / "small", shared))
    # Only the names of the swept axes may differ: not 47 cell entries, and not the config
    # text either, which grows with the values a sweep lists (an 800-value init_gain sweep
    # made every file 12 KB larger than a 50-value one).
    embedded = json.loads(_embedded_manifest(tmp_path / "large", shared))
    small_axes = json.loads(_embedded_manifest(tmp_path / "small", shared))["sweep_axes"]
    assert grown == len(json.dumps(embedded["sweep_axes"])) - len(json.dumps(small_axes))
    assert "cells" not in embedded and "text" not in embedded["config"]
    assert embedded["config"]["sha256"] == json.loads(
        (tmp_path / "large" / "manifest.json").read_text())["config"]["sha256"]
