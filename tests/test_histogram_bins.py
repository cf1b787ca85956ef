"""``[histograms]``: validated bins, an off switch, and cell ids that say whether a cell
makes histograms."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support import write_config

from gradprobe.bench.plan.histogram_bins import HistogramConfig
from gradprobe.bench.plan.loader import load_config, parse_config
from gradprobe.bench.plan.sweep import Cell
from gradprobe.core.errors import ConfigError

BASE = 'name = "x"\n[sweep]\nseeds = 2\ndepth = [2, 3]\n'


def test_histograms_are_on_by_default_with_the_documented_bins():
    config = parse_config(BASE)
    assert config.histograms == HistogramConfig(-40.0, 5.0, 0.25)
    assert all(cell.histograms == config.histograms for cell in config.cells())


def test_a_histograms_section_sets_the_bins():
    config = parse_config(BASE + "[histograms]\nlow = -20\nhigh = 0\nstep = 0.5\n")
    assert (config.histograms.low, config.histograms.n_bins) == (-20.0, 40)


def test_enabled_false_turns_them_off_and_keeps_the_old_cell_ids():
    off = parse_config(BASE + "[histograms]\nenabled = false\n")
    on = parse_config(BASE)
    assert off.histograms is None
    for cell_off, cell_on in zip(off.cells(), on.cells(), strict=True):
        assert cell_off.histograms is None
        # A cell without histograms has the id it had before histograms existed; turning
        # them on is another plan (a run directory never mixes cells with and without).
        assert cell_off.cell_id == replace(cell_on, histograms=None).cell_id
        assert cell_off.cell_id != cell_on.cell_id


def test_cells_travel_to_workers_with_their_bins():
    cell = parse_config(BASE + "[histograms]\nstep = 1\n").cells()[0]
    again = Cell.from_json(cell.to_json())
    assert again == cell and again.histograms.n_bins == 45
    assert Cell.from_json({**cell.to_json(), "histograms": None}).histograms is None


@pytest.mark.parametrize("table,where", [
    ("enabled = 1", "[histograms] enabled = 1: must be true or false"),
    ("low = 0\nhigh = -1", "[histograms] high = -1.0: must be > histograms.low (0)"),
    ("step = 0", "[histograms] step = 0: must be > 0"),
    ("step = 0.7", "[histograms] step = 0.7: must divide high - low (45) into whole bins"),
    ("step = 0.01", "[histograms] step = 0.01: makes 4500 bins; at most 2000"),
    ('low = "x"', '[histograms] low = "x": must be a number'),
    ("bins = 10", "[histograms] bins: unknown key; known keys are enabled, low, high, step"),
])
def test_bad_bins_name_file_and_key(tmp_path, table, where):
    path = write_config(tmp_path, f"{BASE}[histograms]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert where in str(caught.value)
