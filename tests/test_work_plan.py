"""The analysis' units of work, planned from the cell files' footers."""

from __future__ import annotations

import pandas as pd

from gradprobe.analysis.analyze.work_plan import plan_units
from gradprobe.bench.store.manifest import read_manifest
from gradprobe.bench.store.records import read_records, record_files


def test_record_files_are_what_the_plan_reads(smoke_run):
    cells, units = plan_units(smoke_run, read_manifest(smoke_run))
    assert sorted(c.path for c in cells) == [str(p) for p in record_files(smoke_run)]
    assert [c.rank for c in cells] == list(range(12))
    kinds = pd.Series([u.kind for u in units]).value_counts().to_dict()
    # 6 plain/residual pairs; depth groups per (width, residual); width groups per
    # (depth, residual); one device, so no device groups.
    assert kinds == {"cells": 6, "depth": 4, "width": 6}


def test_pairs_put_the_plain_cell_first_and_ranks_follow_the_axes(smoke_run):
    cells, units = plan_units(smoke_run, read_manifest(smoke_run))
    axes = read_records(smoke_run, columns=["cell_id", "depth", "width", "residual"]
                        ).drop_duplicates("cell_id").set_index("cell_id")
    for unit in (u for u in units if u.kind == "cells"):
        control, treatment = unit.cells
        assert not axes.loc[control.cell_id, "residual"]
        assert axes.loc[treatment.cell_id, "residual"]
    by_rank = [tuple(axes.loc[c.cell_id]) for c in cells]
    assert by_rank == sorted(by_rank)  # depth, then width, then residual


def test_an_unpaired_cell_is_a_unit_of_its_own(smoke_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    record_files(run)[0].unlink()
    cells, units = plan_units(run, read_manifest(run))
    sizes = sorted(len(u.cells) for u in units if u.kind == "cells")
    assert len(cells) == 11 and sizes == [1, *[2] * 5]
