"""The training tables, streamed per cell or pair, equal those of all training records.

The reference is the training analysis as it was before it streamed (issue 14 item 3): the
run's whole loss and gradient tables in memory, one ``analyze_training`` over them.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.analyze import AnalysisSettings, analyze_run, training_work
from gradprobe.analysis.stats.training_stats import TABLES, analyze_training
from gradprobe.bench.store.manifest import read_manifest
from gradprobe.bench.store.records import cell_path
from gradprobe.bench.store.train_records import read_training, train_path

SETTINGS = AnalysisSettings(n_resamples=199)


def whole_run_training(run_dir, settings: AnalysisSettings) -> dict[str, pd.DataFrame]:
    """The training tables as the all-in-memory analysis computed them."""
    manifest = read_manifest(run_dir)
    loss = read_training(run_dir, "loss", cells=manifest.cell_ids)
    grads = read_training(run_dir, "grads", cells=manifest.cell_ids)
    return analyze_training(loss, grads, manifest.experiment.report.target_loss,
                            rng=np.random.default_rng(settings.seed).spawn(6)[4],
                            n_resamples=settings.n_resamples, alpha=settings.alpha)


@pytest.fixture(scope="module")
def unpaired_train_run(train_run, tmp_path_factory):
    """The training run without one residual cell: its plain cell is a unit of its own."""
    run = tmp_path_factory.mktemp("train-gappy") / "run"
    shutil.copytree(train_run, run, ignore=shutil.ignore_patterns("analysis"))
    loss = read_training(run, "loss", columns=["cell_id", "residual", "depth"])
    gone = loss[loss["residual"] & (loss["depth"] == 6)]["cell_id"].iloc[0]
    for path in (cell_path(run, gone), train_path(run, "loss", gone),
                 train_path(run, "grads", gone)):
        path.unlink()
    return run


@pytest.mark.parametrize("which", ["complete", "unpaired"])
def test_streamed_training_tables_equal_the_whole_run_ones(train_run, unpaired_train_run,
                                                           tmp_path, which):
    source = train_run if which == "complete" else unpaired_train_run
    run = tmp_path / "run"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("analysis"))
    streamed = analyze_run(run, settings=SETTINGS)
    reference = whole_run_training(run, SETTINGS)
    for name in TABLES:
        assert not reference[name].empty, name
        pd.testing.assert_frame_equal(getattr(streamed, name), reference[name],
                                      check_exact=True, obj=name)
    pairs = len(streamed.train_final)
    assert pairs == (2 if which == "complete" else 1)


def test_each_unit_reads_the_training_files_of_its_own_cells_only(train_run, tmp_path,
                                                                  monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(train_run, run, ignore=shutil.ignore_patterns("analysis"))
    reads = []

    def read_training(run_dir, kind, *, cells=None, columns=None):
        reads.append((kind, cells, columns))
        return real(run_dir, kind, cells=cells, columns=columns)

    real = training_work.read_training
    monkeypatch.setattr(training_work, "read_training", read_training)
    analyze_run(run, settings=SETTINGS)
    assert reads and all(cells is not None and 1 <= len(cells) <= 2 for _, cells, _ in reads)
    every = sorted(c for kind, cells, _ in reads if kind == "loss" for c in cells)
    assert every == sorted(read_manifest(run).cell_ids)  # each cell read once
    assert all(columns == training_work.GRADS_COLUMNS for kind, _, columns in reads
               if kind == "grads")
