"""Records are identical whichever executor ran them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.loader import load_config
from bench.runner import run_sweep
from tests.conftest import SMOKE


def records(run_dir) -> pd.DataFrame:
    frame = pd.read_parquet(run_dir / "records")
    return frame.sort_values(["cell_id", "seed", "param"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_records(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("local") / "run"
    run_sweep(load_config(SMOKE), out=run_dir, progress=False)
    return records(run_dir)


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_executor_records_identical_to_local(tmp_path, local_records, executor):
    run_dir = tmp_path / "run"
    result = run_sweep(load_config(SMOKE), out=run_dir, progress=False, executor=executor,
                       workers=2)
    assert result.cells_run == 12
    pd.testing.assert_frame_equal(records(run_dir), local_records)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["settings"]["executor"] == executor
    assert manifest["executor"] == {"name": executor, "workers": 2, "scheduler": None}
    assert manifest["status"] == "complete" and len(manifest["timings"]) == 12


def test_manifest_records_the_executor(tmp_path):
    """Bug: the manifest recorded neither the executor, --workers nor --scheduler."""
    run_dir = tmp_path / "run"
    run_sweep(load_config(SMOKE), out=run_dir, progress=False, executor="processes",
              workers=1)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["executor"] == {"name": "processes", "workers": 1, "scheduler": None}
    run_sweep(load_config(SMOKE), out=tmp_path / "local", progress=False)
    manifest = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert manifest["executor"] == {"name": "local", "workers": None, "scheduler": None}
