"""Baselines: a complete, verified copy of a run that compare reads like a run."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from gradprobe.analysis.compare.baseline import list_baselines, save_baseline
from gradprobe.analysis.compare.sides import load_side
from gradprobe.core.errors import UserError


def test_save_copies_records_and_manifest(smoke_run, tmp_path):
    saved = save_baseline(smoke_run, name="smoke", root=tmp_path)
    assert saved.path == tmp_path / "smoke"
    original = pd.read_parquet(smoke_run / "records")
    copied = pd.read_parquet(saved.path / "records")
    pd.testing.assert_frame_equal(original, copied)
    assert json.loads((saved.path / "manifest.json").read_text()) == \
        json.loads((smoke_run / "manifest.json").read_text())
    meta = json.loads((saved.path / "baseline.json").read_text())
    assert meta["baseline_version"] == 1 and len(meta["files"]) == 12
    assert load_side(saved.path, "BASE").kind == "baseline"
    assert saved.size < 1_000_000  # small enough to commit
    assert [b["name"] for b in list_baselines(tmp_path)] == ["smoke"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_existing_baseline_needs_force(smoke_run, tmp_path):
    save_baseline(smoke_run, name="b", root=tmp_path)
    with pytest.raises(UserError, match="exists; pass --force"):
        save_baseline(smoke_run, name="b", root=tmp_path)
    save_baseline(smoke_run, name="b", root=tmp_path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# "smoke\n": regression (issue 14, item 11), "$" with re.match accepted a trailing newline.
@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65, "smoke\n"])
def test_bad_names_are_refused(smoke_run, tmp_path, name):
    with pytest.raises(UserError, match="--name"):
        save_baseline(smoke_run, name=name, root=tmp_path)
    assert not list(tmp_path.iterdir())


def test_incomplete_run_is_refused(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="not complete"):
        save_baseline(run, name="x", root=tmp_path / "baselines")
    assert not (tmp_path / "baselines" / "x").exists()


def test_tampered_baseline_is_detected(smoke_run, tmp_path):
    saved = save_baseline(smoke_run, name="t", root=tmp_path)
    victim = sorted((saved.path / "records").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(UserError, match="differs from the checksum"):
        load_side(saved.path, "BASE")
    victim.unlink()
    with pytest.raises(UserError, match="missing from baseline"):
        load_side(saved.path, "BASE")


def test_committed_smoke_baseline_is_intact_and_matches_a_fresh_run(smoke_run):
    """The CI gate's reference: checksums hold and a fresh smoke run does not regress."""
    from support import REPO

    from gradprobe.analysis.compare.comparison import CompareSettings, compare_sides

    base = load_side(REPO / "reports" / "baselines" / "smoke", "BASE")
    assert base.kind == "baseline" and base.config.name == "smoke"
    assert len(base.seeds) == 16 and len(base.cells) == 12
    result = compare_sides(base, load_side(smoke_run, "RUN"), CompareSettings(n_resamples=199))
    assert not result.regressed and result.pairing["paired"].all()
