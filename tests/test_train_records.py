"""Training records: the documented tables, paired with the records, resumable, versioned."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from support import TRAIN_SMOKE, write_config

from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.loader import load_config
from gradprobe.bench.store import train_records
from gradprobe.bench.store.records import cell_path
from gradprobe.core.errors import UserError

N_SEEDS, STEPS, CELLS = 10, 30, 4


def test_tables_have_the_documented_rows_and_columns(train_run):
    loss = pd.read_parquet(train_run / "train" / "loss")
    grads = pd.read_parquet(train_run / "train" / "grads")
    assert list(loss.columns) == train_records.LOSS_SCHEMA.names
    assert list(grads.columns) == train_records.GRADS_SCHEMA.names
    assert len(loss) == CELLS * N_SEEDS * (STEPS + 1)
    n_params = 3 + 3 + 6 + 6  # depths 3 and 6, plain and residual, bias-free
    assert len(grads) == n_params * N_SEEDS * 4  # logged steps 0, 10, 20, 30
    assert sorted(grads["step"].unique()) == [0, 10, 20, 30]
    assert set(loss["optimizer"]) == {"adam"} and set(loss["lr"]) == {0.02}
    assert not loss.duplicated(["cell_id", "train_id", "seed", "step"]).any()
    for metric in METRICS:
        assert metric in grads.columns


def test_students_start_from_the_records_and_share_their_task(train_run):
    loss = pd.read_parquet(train_run / "train" / "loss")
    records = pd.read_parquet(train_run / "records")
    starts = loss[loss["step"] == 0].merge(
        records.drop_duplicates(["cell_id", "seed"])[["cell_id", "seed", "init_fingerprint"]],
        on=["cell_id", "seed"], suffixes=("", "_records"))
    assert len(starts) == CELLS * N_SEEDS
    assert (starts["init_fingerprint"] == starts["init_fingerprint_records"]).all()
    # One task per seed (width and teacher are fixed here), whatever the depth or skips.
    assert (loss.groupby("seed")["task_fingerprint"].nunique() == 1).all()
    assert loss["task_fingerprint"].nunique() == N_SEEDS


def test_manifest_times_the_training(train_run):
    manifest = json.loads((train_run / "manifest.json").read_text())
    assert all(t["train_seconds"] > 0 for t in manifest["timings"].values())
    assert manifest["sweep_axes"] == ["depth", "residual"]


def test_a_cell_killed_while_training_is_redone_identically(train_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    config = load_config(write_config(tmp_path, TRAIN_SMOKE, "train.toml"))
    cell = config.cells()[1]
    before = pq.read_table(train_records.train_path(run, "loss", cell.cell_id)).to_pandas()
    # Killed after the training files, before the records file: the cell is not done.
    cell_path(run, cell.cell_id).unlink()
    (run / "train" / "loss" / f".cell-{cell.cell_id}.parquet.123.tmp").write_bytes(b"x")
    result = run_sweep(config, out=run, progress=False)
    assert (result.cells_run, result.cells_skipped) == (1, CELLS - 1)
    after = pq.read_table(train_records.train_path(run, "loss", cell.cell_id)).to_pandas()
    pd.testing.assert_frame_equal(after, before)
    assert not list((run / "train" / "loss").glob(".*.tmp"))


def test_force_clears_the_old_training_records(train_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    other = TRAIN_SMOKE.replace("depth = [3, 6]", "depth = [3]")
    run_sweep(load_config(write_config(tmp_path, other, "other.toml")), out=run,
              progress=False, force=True)
    assert len(list((run / "train" / "loss").glob("cell-*.parquet"))) == 2


def test_swept_learning_rates_share_one_at_init_cell(tmp_path):
    text = TRAIN_SMOKE.replace("depth = [3, 6]", "depth = [3]").replace(
        "seeds = 10", "seeds = 3\nlr = [0.02, 0.002]").replace("steps = 30", "steps = 4")
    run_sweep(load_config(write_config(tmp_path, text)), out=tmp_path / "run",
              progress=False)
    loss = pd.read_parquet(tmp_path / "run" / "train" / "loss")
    assert loss["cell_id"].nunique() == 2 and loss["train_id"].nunique() == 2
    assert sorted(loss["lr"].unique()) == [0.002, 0.02]
    assert len(pd.read_parquet(tmp_path / "run" / "records")) == 3 * 3 * 2


def test_newer_and_foreign_training_files_are_refused(train_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    path = sorted((run / "train" / "loss").glob("cell-*.parquet"))[0]
    table = pq.read_table(path)
    newer = {**table.schema.metadata, train_records.META_VERSION: b"99"}
    pq.write_table(table.replace_schema_metadata(newer), path)
    with pytest.raises(UserError, match="training schema version 99 is newer"):
        train_records.read_training(run, "loss")
    pq.write_table(table.replace_schema_metadata({}), path)
    with pytest.raises(UserError, match=r"without gradprobe\.train_schema_version"):
        train_records.read_training(run, "loss")
    path.write_bytes(b"not parquet")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        train_records.read_training(run, "loss")


def test_training_file_copied_over_another_is_refused(train_run, tmp_path):
    # Regression (issue 14, item 4): as for records files, a training file copied over
    # another cell's was read as that cell's.
    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    source, victim = sorted((run / "train" / "loss").glob("cell-*.parquet"))[:2]
    shutil.copyfile(source, victim)
    with pytest.raises(UserError, match=f"{victim.name}: does not hold the training records"):
        train_records.read_training(run, "loss")


def test_a_run_without_training_has_no_training_tables(smoke_run):
    assert train_records.read_training(smoke_run, "loss").empty
    assert not (smoke_run / "train").exists()


def test_device_drawn_students_start_from_the_records_too(tmp_path):
    # init_rng = "device" draws whole blocks of seeds on the device; training draws its
    # state the same way (whole blocks), so it starts from the measured state.
    text = TRAIN_SMOKE.replace("[model]\n", '[model]\ninit_rng = "device"\n').replace(
        "steps = 30", "steps = 3").replace("depth = [3, 6]", "depth = [3]")
    run_sweep(load_config(write_config(tmp_path, text)), out=tmp_path / "run", progress=False,
              max_memory=2**20)
    loss = pd.read_parquet(tmp_path / "run" / "train" / "loss")
    records = pd.read_parquet(tmp_path / "run" / "records")
    starts = loss[loss["step"] == 0].merge(records.drop_duplicates(["cell_id", "seed"]),
                                           on=["cell_id", "seed"], suffixes=("", "_r"))
    assert len(starts) == 2 * N_SEEDS
    assert (starts["init_fingerprint"] == starts["init_fingerprint_r"]).all()


def test_process_executor_writes_the_same_training_records(train_run, tmp_path):
    config = load_config(write_config(tmp_path, TRAIN_SMOKE, "train.toml"))
    run_sweep(config, out=tmp_path / "run", progress=False, executor="processes", workers=2)
    for kind in ("loss", "grads"):
        ours = pd.read_parquet(tmp_path / "run" / "train" / kind)
        local = pd.read_parquet(train_run / "train" / kind)
        keys = ["cell_id", "seed", "step"] + (["param"] if kind == "grads" else [])
        pd.testing.assert_frame_equal(ours.sort_values(keys).reset_index(drop=True),
                                      local.sort_values(keys).reset_index(drop=True))


def test_version_1_files_read_with_the_data_factory_default(tmp_path):
    """Regression: schema 2 added data_factory; a version 1 file (without it) must still be
    read, with the default "", next to newer files."""
    from gradprobe.bench.engine.training import train_cell
    from gradprobe.bench.init.initialization import mlp_param_specs
    from gradprobe.bench.plan.config import DataConfig, ModelConfig, TrainConfig
    from gradprobe.bench.plan.sweep import Cell

    train = TrainConfig(steps=2, samples=3, log_every=1)
    cell = Cell(ModelConfig(depth=3, width=4), DataConfig(), "cpu", "float64", (0, 1),
                (train,))
    train_records.write_training(tmp_path, cell, mlp_param_specs(cell.model),
                                 train_cell(cell))
    for kind in train_records.KINDS:
        path = train_records.train_path(tmp_path, kind, cell.cell_id)
        table = pq.read_table(path)
        meta = {**table.schema.metadata, train_records.META_VERSION: b"1"}
        old = table.drop_columns(["data_factory"]).replace_schema_metadata(meta)
        pq.write_table(old, path)
        frame = train_records.read_training(tmp_path, kind)
        assert list(frame.columns) == table.column_names
        assert set(frame["data_factory"]) == {""}
