"""Histogram records: the documented columns, per seed, written with the cell, read strictly,
and resumed with the cell."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support import SMOKE, write_config

from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.histogram_bins import SPECIAL_COUNTS, HistogramConfig
from gradprobe.bench.plan.loader import load_config
from gradprobe.bench.store import histogram_records as hr
from gradprobe.bench.store.records import cell_path, read_records
from gradprobe.bench.store.run_dir import RunDir
from gradprobe.core.errors import UserError

BINS = HistogramConfig()


def _totals(frame: pd.DataFrame) -> np.ndarray:
    return hr.count_matrix(frame).sum(axis=1) + frame[list(SPECIAL_COUNTS)].sum(axis=1)


def test_one_row_per_seed_and_parameter_with_the_documented_columns(smoke_run):
    hist = RunDir(smoke_run).histograms()
    assert list(hist.columns) == hr.histogram_schema(BINS.n_bins).names
    records = read_records(smoke_run)
    assert len(hist) == len(records)
    keys = ["cell_id", "seed", "param"]
    merged = hist.merge(records[[*keys, "grad_zero", "grad_nonfinite"]], on=keys)
    assert len(merged) == len(records)
    assert set(hist["phase"]) == {"init"} and set(hist["step"]) == {0}
    np.testing.assert_array_equal(_totals(hist), hist["numel"])
    np.testing.assert_array_equal(merged["n_zero"], merged["grad_zero"])
    np.testing.assert_array_equal(merged["n_nonfinite"], merged["grad_nonfinite"])


def test_training_adds_the_logged_steps(train_run):
    hist = RunDir(train_run).histograms()
    trained = hist[hist["phase"] == "train"]
    assert sorted(trained["step"].unique()) == [0, 10, 20, 30]
    assert (trained["train_id"] != "").all()
    assert len(trained) == 4 * len(hist[hist["phase"] == "init"])
    np.testing.assert_array_equal(_totals(hist), hist["numel"])


def test_a_file_round_trips_and_a_newer_version_is_refused(smoke_run, tmp_path):
    path = sorted((smoke_run / hr.HISTOGRAM_DIR).glob("cell-*.parquet"))[0]
    table = hr.read_histogram_file(path, BINS)
    copy = tmp_path / path.name
    pq.write_table(pq.read_table(path), copy)
    assert hr.read_histogram_file(copy, BINS).equals(table)
    newer = {**table.schema.metadata, hr.META_VERSION: b"2"}
    pq.write_table(pq.read_table(path).replace_schema_metadata(newer), copy)
    with pytest.raises(UserError, match="histogram schema version 2 is newer than this "
                                        "gradprobe reads"):
        hr.read_histogram_file(copy, BINS)


def test_a_file_copied_over_another_or_with_other_bins_is_refused(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    source, victim = sorted((run / hr.HISTOGRAM_DIR).glob("cell-*.parquet"))[:2]
    with pytest.raises(UserError, match=r"bins .* are not the run's"):
        hr.read_histogram_file(source, HistogramConfig(step=0.5))
    with pytest.raises(UserError, match=r"has seeds \[0, 1, 2, .*\], not the run's \[0, 1\]"):
        hr.read_histogram_file(source, BINS, seeds=[0, 1])
    shutil.copyfile(source, victim)
    with pytest.raises(UserError, match=f"{victim.name}: holds the histograms of cell"):
        RunDir(run).histograms()


def test_a_cell_killed_before_its_records_or_missing_its_histograms_is_redone(smoke_run,
                                                                             tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    config = load_config(SMOKE)
    first, second = config.cells()[:2]
    before = {c.cell_id: pq.read_table(hr.histogram_path(run, c.cell_id)) for c in
              (first, second)}
    cell_path(run, first.cell_id).unlink()  # killed after the histogram file
    hr.histogram_path(run, second.cell_id).unlink()  # histogram file deleted by hand
    result = run_sweep(config, out=run, progress=False)
    assert result.cells_run == 2
    for cell_id, table in before.items():
        assert pq.read_table(hr.histogram_path(run, cell_id)).equals(table)


def test_enabled_false_writes_no_histograms(tmp_path):
    text = SMOKE.read_text().replace("seeds = 16", "seeds = 2") + \
        "\n[histograms]\nenabled = false\n"
    run_sweep(load_config(write_config(tmp_path, text)), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / hr.HISTOGRAM_DIR).exists()
    assert RunDir(tmp_path / "run").histograms().empty


def test_force_removes_the_old_histograms(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    text = SMOKE.read_text().replace("depth = [2, 3, 4]", "depth = [3]")
    run_sweep(load_config(write_config(tmp_path, text)), out=run, progress=False, force=True)
    assert len(list((run / hr.HISTOGRAM_DIR).glob("cell-*.parquet"))) == 4
