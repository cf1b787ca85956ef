"""The typed manifest: loaded and validated once, with one-line errors for damaged files."""

from __future__ import annotations

import json

import pytest

from gradprobe.bench.store.manifest import CellEntry, Manifest, read_manifest
from gradprobe.bench.store.run_dir import RunDir
from gradprobe.core.errors import UserError


def test_a_run_manifest_is_typed(smoke_run):
    manifest = read_manifest(smoke_run)
    assert isinstance(manifest, Manifest) and manifest.complete
    assert manifest.config.name == "smoke" and len(manifest.config.seeds) == 16
    assert all(isinstance(c, CellEntry) for c in manifest.cells) and len(manifest.cells) == 12
    assert manifest.experiment is manifest.experiment  # parsed once
    assert [c.cell_id for c in manifest.experiment.cells()] == manifest.cell_ids
    assert manifest.git == manifest.environment["git"]
    assert manifest.document["config"]["text"] == manifest.config.text


def test_run_dir_owns_the_layout(smoke_run):
    run = RunDir(smoke_run)
    assert run.manifest_path.name == "manifest.json" and run.records_dir.name == "records"
    assert run.analysis_dir == smoke_run / "analysis" and run.report_path.name == "index.html"
    assert run.manifest is run.manifest
    assert len(run.records()) == sum(t["rows"] for t in run.manifest.timings.values())
    assert run.training_records().empty  # the smoke sweep does not train


@pytest.mark.parametrize("damage,key", [
    (lambda m: m["config"].pop("text"), "config.text"),
    (lambda m: m.pop("cells"), "cells"),
    (lambda m: m["cells"][0].update(n_seeds="16"), "cells[].n_seeds"),
    (lambda m: m.update(status=None), "status"),
    (lambda m: m.pop("environment"), "environment"),
])
def test_manifest_missing_a_key_is_a_one_line_error_naming_it(smoke_run, tmp_path, damage,
                                                                key):
    document = json.loads((smoke_run / "manifest.json").read_text())
    damage(document)
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(UserError) as err:
        read_manifest(tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "manifest.json") in message
    assert f"damaged manifest (key {key} is missing" in message


def test_code_state_is_the_factory_repository(tmp_path, monkeypatch):
    """Bug: the manifest recorded gradprobe's own commit, not the measured code's."""
    from support import git, scratch_repo

    from gradprobe.bench.store.manifest import code_state

    shas = scratch_repo(tmp_path / "repo", commits=2)
    factories = {"scratchnet:make": {"file": str(tmp_path / "repo" / "scratchnet.py")}}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    state = code_state(factories, cwd=outside)
    assert state == {"commit": shas[-1], "commit_date": "2026-01-02T12:00:00Z".replace(
        "Z", "+00:00"), "branch": "main", "dirty": False, "source": "factory scratchnet:make"}
    (tmp_path / "repo" / "untracked.txt").write_text("reports are not code")
    assert code_state(factories, cwd=outside)["dirty"] is False
    (tmp_path / "repo" / "scratchnet.py").write_text("# edited\n")
    assert code_state(factories, cwd=outside)["dirty"] is True
    git(tmp_path / "repo", "checkout", "--quiet", "--", "scratchnet.py")
    git(tmp_path / "repo", "checkout", "--quiet", shas[0])
    assert code_state(factories, cwd=outside)["branch"] is None  # detached (git bisect)
    # No factory: the working directory's repository; outside git: nulls.
    assert code_state({}, cwd=tmp_path / "repo")["commit"] == shas[0]
    assert code_state({}, cwd=outside) == {"commit": None, "commit_date": None,
                                           "branch": None, "dirty": None,
                                           "source": "working directory"}


def test_run_manifest_records_the_code_state(smoke_run):
    manifest = read_manifest(smoke_run)
    assert manifest.code["source"] == "working directory"
    assert set(manifest.code) == {"commit", "commit_date", "branch", "dirty", "source"}
