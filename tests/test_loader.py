"""Config files: presets load, and every kind of bad input fails with one clear line."""

from __future__ import annotations

import re

import pytest
from support import write_config

from gradprobe.bench.plan.loader import CONFIG_DIR, config_with_overrides, load_config, parse_config
from gradprobe.bench.plan.sweep import Cell
from gradprobe.core.errors import ConfigError, UserError

BASE = 'name = "t"\n[model]\ndepth = 3\nwidth = 4\n'


def test_presets_load_and_expand():
    for name in ("seed", "default", "smoke"):
        config = load_config(CONFIG_DIR / f"{name}.toml")
        assert config.name == name
        assert config.cells()
    seed = load_config("seed")
    assert len(seed.sweep.seeds) == 100
    assert [c.model.residual for c in seed.cells()] == [False, True]
    assert {(c.model.depth, c.model.width) for c in seed.cells()} == {(5, 10)}


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
def test_no_preset_description_states_a_seed_count(preset):
    """Regression: descriptions said "50 seeds each", "100 seeds", which `--seeds` overrides,
    so a report could state a count its run did not have (the report states the seeds
    actually run elsewhere)."""
    description = load_config(preset).description
    assert not re.search(r"\d[\d,]*\s+seeds?\b", description), description


def test_default_sweep_covers_what_make_bench_promises():
    cells = load_config("default").cells()
    depths = {c.model.depth for c in cells}
    widths = {c.model.width for c in cells}
    assert min(depths) == 2 and max(depths) >= 32 and 5 in depths
    assert min(widths) == 10 and max(widths) >= 256
    assert {c.model.residual for c in cells} == {False, True}
    assert len(cells[0].seeds) >= 30


def test_sweep_axes_expand_as_cartesian_product():
    config = parse_config(BASE + "[sweep]\nseeds = [3, 9]\ndepth = [2, 3]\n"
                          "residual = [false, true]\ndtype = [\"float32\", \"float64\"]\n")
    cells = config.cells()
    assert len(cells) == 8
    assert {c.seeds for c in cells} == {(3, 9)}
    assert config.sweep_axes() == ["depth", "residual", "dtype"]
    assert len({c.cell_id for c in cells}) == 8


@pytest.mark.parametrize("text,where", [
    (BASE + "colour = 1\n", "[model] colour"),
    ('name = "t"\nmodle = {}\n', "modle"),
    (BASE.replace("depth = 3", "depth = 1"), "[model] depth = 1: must be >= 2"),
    (BASE.replace("width = 4", "width = 0"), "[model] width = 0: must be >= 1"),
    (BASE.replace("depth = 3", 'depth = "3"'), '[model] depth = "3": must be an integer'),
    (BASE.replace("depth = 3", "depth = true"), "[model] depth = true: must be an integer"),
    (BASE + 'activation = "swish"\n', '[model] activation = "swish": must be one of'),
    (BASE + "bias = 1\n", "[model] bias = 1: must be true or false"),
    (BASE + "init_gain = nan\n", "[model] init_gain = nan: must be finite"),
    (BASE + '[data]\ninput = [[1.0, 2.0]]\n', "[data] input: fixed rows have 2 values but "
                                              "model.width is 4"),
    (BASE + '[data]\ninput = [[1.0], [1.0, 2.0]]\n', "[data] input"),
    (BASE + '[data]\ninput = "gaussian"\n', '[data] input = "gaussian"'),
    (BASE + '[data]\nloss = "l1"\n', '[data] loss = "l1"'),
    (BASE + "[data]\nbatch_size = 0\n", "[data] batch_size = 0: must be >= 1"),
    (BASE + "[sweep]\nseeds = 0\n", "[sweep] seeds = 0"),
    (BASE + "[sweep]\nseeds = [1, 1]\n", "[sweep] seeds"),
    (BASE + "[sweep]\nseeds = [-1]\n", "[sweep] seeds = -1"),
    (BASE + "[sweep]\ndepth = 4\n", "[sweep] depth = 4: a sweep axis must be a list"),
    (BASE + "[sweep]\ndepth = [4, 1]\n", "[sweep] depth = 1: must be >= 2"),
    (BASE + "[sweep]\nheight = [1]\n", "[sweep] height"),
    (BASE + '[sweep]\ndevice = ["tpu"]\n', '[sweep] device = "tpu"'),
    (BASE + '[sweep]\ndevice = ["cpu\\n"]\n', '[sweep] device = "cpu'),  # re.match + "$"
    (BASE + '[sweep]\nmax_memory = "infG"\n', '[sweep] max_memory = "infG": must be a size'),
    (BASE + '[sweep]\nmax_memory = "1e400G"\n', '[sweep] max_memory = "1e400G"'),
    (BASE + '[sweep]\ndtype = ["int8"]\n', '[sweep] dtype = "int8"'),
    (BASE + '[sweep]\ndtype = ["float32", "float32"]\n', "[sweep] dtype"),
    (BASE + '[data]\ninput = [[1.0, 2.0, 3.0, 4.0]]\n[sweep]\nwidth = [4, 5]\n',
     "in the sweep cell width = 5"),
    (BASE + '[report]\nmetric = "speed"\n', '[report] metric = "speed"'),
    (BASE + '[report]\nheadline = { colour = 5 }\n', "[report.headline] colour"),
    (BASE + "[train]\nsteps = 0\n", "[train] steps = 0: must be >= 1"),
    (BASE + "[train]\nepochs = 3\n", "[train] epochs: unknown key"),
    (BASE + '[train]\noptimizer = "rmsprop"\n', '[train] optimizer = "rmsprop": must be one '
                                                'of sgd, adam'),
    (BASE + "[train]\nlr = -0.1\n", "[train] lr = -0.1: must be > 0"),
    (BASE + '[train]\nlr = "fast"\n', '[train] lr = "fast": must be a number'),
    (BASE + '[train]\noptimizer = "adam"\nmomentum = 0.9\n', "[train] momentum = 0.9: "
                                                             "applies to optimizer"),
    (BASE + "[train]\nmomentum = 1.0\n", "[train] momentum = 1.0: must be >= 0 and < 1"),
    (BASE + "[train]\nlog_every = 0\n", "[train] log_every = 0: must be >= 1"),
    (BASE + "[train]\nsamples = 0\n", "[train] samples = 0: must be >= 1"),
    (BASE + "[sweep]\nlr = [0.1, 0.01]\n", "[sweep] lr = [0.1, 0.01]: is a [train] key, "
                                           "but the config has no [train] section"),
    (BASE + "[train]\n[sweep]\nlr = [0.1, 0]\n", "[sweep] lr = 0: must be > 0"),
    (BASE + "[train]\n[data]\ninput = [[1.0, 2.0, 3.0, 4.0]]\n", "[data] input: [train] "
                                                                  "draws its own"),
    (BASE + '[train]\nsamples = 1\n[sweep]\nnorm = ["none", "batchnorm"]\n[data]\n'
     "batch_size = 2\n", '[train] samples = 1: batchnorm normalises over the batch and needs '
                         'train.samples > 1 (in the sweep cell norm = "batchnorm")'),
    (BASE + '[data]\nfactory = "factory_models:next_tokens"\n',
     '[data] factory = "factory_models:next_tokens": needs a [model] factory'),
    (BASE + '[data]\nfactory = "not a spec"\n',
     '[data] factory = "not a spec": must look like "package.module:function"'),
    (BASE + "[report]\ntarget_loss = 0\n", "[report] target_loss = 0: must be > 0"),
    (BASE + '[report]\ntarget_loss = ["low"]\n', '[report] target_loss = "low": must be a '
                                                 'number'),
])
def test_each_config_error_names_file_and_key(tmp_path, text, where):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert where in message
    assert "\n" not in message


def test_malformed_toml(tmp_path):
    path = write_config(tmp_path, "name = \n")
    with pytest.raises(UserError, match=r"c\.toml: malformed TOML"):
        load_config(path)


def test_missing_file_lists_presets():
    presets = (r"presets: bert, conv_resnet, default, full, gpt2, large, resnet, seed, smoke, "
               r"transformer")
    with pytest.raises(UserError, match=rf"no such config file .*{presets}"):
        load_config("nope/missing.toml")


def test_fixed_input_sets_batch_size(tmp_path):
    config = load_config(write_config(tmp_path, BASE.replace("width = 4", "width = 2")
                                      + "[data]\ninput = [[1.0, 2.0], [3.0, 4.0]]\n"))
    assert config.data.batch_size == 2
    assert config.cells()[0].axes()["input"].startswith("fixed:")


def test_cli_overrides_revalidate():
    config = load_config("seed")
    assert len(config_with_overrides(config, seeds=7).sweep.seeds) == 7
    with pytest.raises(ConfigError, match=r"command line: .*--seeds must be >= 1"):
        config_with_overrides(config, seeds=0)
    with pytest.raises(ConfigError, match=r"command line: .*device"):
        config_with_overrides(config, devices=["gpu"])


def test_cell_id_depends_on_content_only():
    a = parse_config(BASE + "[sweep]\nseeds = 3\n", source="a.toml").cells()[0]
    b = parse_config("# a comment\n" + BASE + "[sweep]\nseeds = [0, 1, 2]\n",
                     source="b.toml").cells()[0]
    c = parse_config(BASE + "[sweep]\nseeds = 4\n").cells()[0]
    assert a.cell_id == b.cell_id != c.cell_id


def test_train_section_and_swept_train_keys():
    config = parse_config(BASE + '[train]\nsteps = 7\noptimizer = "adam"\n[sweep]\n'
                          "residual = [false, true]\nlr = [0.1, 0.01]\n[report]\n"
                          "target_loss = [0.5, 0.1]\n")
    cells = config.cells()
    assert len(cells) == 2  # train keys do not multiply the at-initialisation cells
    assert [(t.lr, t.steps, t.optimizer) for t in cells[0].trains] == [(0.1, 7, "adam"),
                                                                       (0.01, 7, "adam")]
    assert config.sweep_axes() == ["residual", "lr"]
    assert config.report.target_loss == (0.5, 0.1)
    assert Cell.from_json(cells[1].to_json()) == cells[1]
    untrained = parse_config(BASE).cells()[0]
    assert untrained.trains == () and config.train is not None
    assert len({c.cell_id for c in [*cells, untrained]}) == 3


def test_factory_key_is_a_record_axis():
    config = parse_config(BASE + 'factory = "gradprobe.bench.models.mlp:blog_mlp"\n')
    assert config.cells()[0].axes()["factory"] == "gradprobe.bench.models.mlp:blog_mlp"
    assert parse_config(BASE).cells()[0].axes()["factory"] == ""


def test_readme_configuration_block_is_a_valid_config():
    """Bug: the README's reference block had a key the loader refuses ([train] metric), so
    a user copying it got an error. Every key it shows must load."""
    readme = (CONFIG_DIR.parents[1] / "README.md").read_text()
    block = readme.split("## Configuration", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_config(block)
    assert config.train is not None and config.compare.prefer
    assert {"residual_form", "norm", "init_rng", "factory"} <= set(block.split())


def test_headline_cell_outside_the_sweep_fails_before_running(tmp_path):
    """Bug: a [report] headline naming no cell of the sweep was only caught by analyze,
    after the whole sweep had run, and the run could never get a report."""
    text = """name = "hl"
[model]
depth = 3
[sweep]
seeds = 2
width = [4, 8]
[report]
headline = { depth = DEPTH, width = 8 }
"""
    path = write_config(tmp_path, text.replace("DEPTH", "99"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: [report.headline] depth = 99: is not a cell of "
                                 "this sweep; pick one of 3")
    assert load_config(write_config(tmp_path, text.replace("DEPTH", "3"), "ok.toml"))


@pytest.mark.parametrize("axis", ['activation = ["relu", "relu"]', "depth = [2, 2, 3]",
                                  "init_gain = [1, 1.0]", 'residual_scale = ["0.5", 0.5]'])
def test_repeated_sweep_values_are_refused(tmp_path, axis):
    # Regression (issue 14, item 7): repeats made two cells with one id, a KeyError, and a
    # rerun that marked the run complete.
    path = write_config(tmp_path, BASE + f"[sweep]\nseeds = 2\n{axis}\n")
    with pytest.raises(ConfigError, match=r"\[sweep\] \w+ = .*: repeats the value"):
        load_config(path)


@pytest.mark.parametrize("seeds,where", [
    ("[1, 4294967297]", "[sweep] seeds = 4294967297: seeds must be integers in 0..4294967295"),
    ("[4294967296]", "[sweep] seeds = 4294967296"),
    ("1000000000000", "[sweep] seeds = 1000000000000: a seed count must be <= 100000"),
])
def test_seeds_outside_32_bits_are_refused(tmp_path, seeds, where):
    # Regression (issue 14, item 8): torch keeps a seed's low 32 bits, so 1 and 2**32 + 1
    # gave identical records counted as independent; a count of 10**12 exhausted memory.
    path = write_config(tmp_path, BASE + f"[sweep]\nseeds = {seeds}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert where in str(caught.value)


def test_seed_count_override_is_bounded():
    with pytest.raises(ConfigError, match=r"command line: .*--seeds must be <= 100000"):
        config_with_overrides(load_config("seed"), seeds=10**12)


def test_oversized_config_is_refused(tmp_path):
    # Regression (issue 14, item 1): a 60 MB description wrote a cell file Arrow could not
    # read back; the config is now bounded before anything runs.
    from gradprobe.bench.plan.loader import MAX_CONFIG_BYTES

    path = write_config(tmp_path, f'description = "{"x" * MAX_CONFIG_BYTES}"\n' + BASE)
    with pytest.raises(UserError, match=r": config is larger than 1024 KiB"):
        load_config(path)


@pytest.mark.skipif(not __import__("os").path.exists("/dev/zero"), reason="no /dev/zero")
def test_endless_config_file_is_read_with_a_limit():
    """Issue 14, item 2: `run /dev/zero` must stop reading at the size limit, not exhaust
    memory."""
    with pytest.raises(UserError, match=r"/dev/zero: config is larger than 1024 KiB"):
        load_config("/dev/zero")
