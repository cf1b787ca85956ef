"""Users' own models: the torch.func path agrees with the engine, vmap with the loop, and
every bad factory is one clear line before anything runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from support import write_config

from gradprobe.bench.engine import generic
from gradprobe.bench.engine.batched import measure_group
from gradprobe.bench.engine.generic import measure_factory
from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.execute.runner import plan_cells, run_sweep
from gradprobe.bench.models.reference import build_reference
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.loader import load_config, parse_config
from gradprobe.bench.plan.sweep import Cell
from gradprobe.core.errors import ConfigError

BLOG = "gradprobe.bench.models.mlp:blog_mlp"
SEEDS = tuple(range(6))
FLOAT_METRICS = ["grad_mean_abs", "grad_l2", "grad_max_abs", "weight_l2"]


@pytest.mark.parametrize("model_kwargs", [
    {},
    {"residual": True},
    {"bias": True, "out_features": 3, "activation": "tanh"},
    {"residual": True, "residual_form": "pre", "init": "kaiming_normal", "init_gain": 0.8},
])
def test_generic_path_matches_engine_on_the_blog_mlp(model_kwargs):
    data = DataConfig(batch_size=2, target=0.3)
    engine = measure_group([Cell(ModelConfig(**model_kwargs), data, "cpu", "float32",
                                 SEEDS)])
    (engine,) = engine.values()
    cell = Cell(ModelConfig(factory=BLOG, **model_kwargs), data, "cpu", "float32", SEEDS)
    done = measure_factory(cell)
    assert done.batching == "vmap" and done.reason == ""
    assert [(s.name, s.layer, s.kind) for s in done.specs] == \
        [(f"layers.{i}.{k}", i, k) for i in range(5) for k in ("weight", "bias")
         if k == "weight" or model_kwargs.get("bias")]
    if model_kwargs.get("init_gain", 1.0) == 1.0:  # the engine hashes the draw before gain
        assert list(done.result.fingerprints) == list(engine.fingerprints)
    np.testing.assert_allclose(done.result.loss, engine.loss, rtol=1e-6)
    for metric in FLOAT_METRICS:
        m = METRICS.index(metric)
        np.testing.assert_allclose(done.result.values[..., m], engine.values[..., m],
                                   rtol=1e-5, atol=1e-30, err_msg=metric)
    for metric in ("grad_nonfinite", "grad_zero"):
        m = METRICS.index(metric)
        assert np.array_equal(done.result.values[..., m], engine.values[..., m]), metric
    # The output layer's owner output is the network output, as in the engine.
    for metric in ("act_rms", "grad_act_rms"):
        m = METRICS.index(metric)
        np.testing.assert_allclose(done.result.values[:, -1, m], engine.values[:, -1, m],
                                   rtol=1e-5)


def test_signals_are_those_of_the_owning_modules():
    """act_rms / grad_act_rms of a hidden Linear: RMS of its output W h and of dL/d(W h),
    from a literal module with retain_grad."""
    model, data = ModelConfig(residual=True), DataConfig(batch_size=3)
    done = measure_factory(Cell(ModelConfig(factory=BLOG, residual=True), data, "cpu",
                                "float32", (0, 4)))
    for row, seed in enumerate((0, 4)):
        net, x = build_reference(model, data, seed)
        linear_outputs: list[torch.Tensor] = []
        keep = linear_outputs.append
        handles = [layer.register_forward_hook(lambda m, a, out, keep=keep: keep(out))
                   for layer in net.layers]
        y = net(x)[-1]
        for out in linear_outputs:
            out.retain_grad()
        torch.nn.functional.mse_loss(y, torch.zeros_like(y)).backward()
        for h in handles:
            h.remove()
        for layer, out in enumerate(linear_outputs):
            rms = out.detach().double().square().mean().sqrt().item()
            grad_rms = out.grad.double().square().mean().sqrt().item()
            assert done.result.values[row, layer, METRICS.index("act_rms")] == \
                pytest.approx(rms, rel=1e-5)
            assert done.result.values[row, layer, METRICS.index("grad_act_rms")] == \
                pytest.approx(grad_rms, rel=1e-5)


def test_same_records_through_the_whole_pipeline(tmp_path):
    body = "[data]\nbatch_size = 2\n[sweep]\nseeds = 12\nresidual = [false, true]\n"
    runs = {}
    for name, extra in (("engine", ""), ("factory", f'[model]\nfactory = "{BLOG}"\n')):
        config = load_config(write_config(tmp_path, f'name = "{name}"\n{extra}{body}',
                                          f"{name}.toml"))
        run_sweep(config, out=tmp_path / name, progress=False)
        runs[name] = pd.read_parquet(tmp_path / name / "records").sort_values(
            ["residual", "seed", "param"]).reset_index(drop=True)
    engine, factory = runs["engine"], runs["factory"]
    assert set(factory["factory"]) == {BLOG} and set(engine["factory"]) == {""}
    same = ["residual", "seed", "param", "layer", "kind", "numel", "init_fingerprint",
            "grad_nonfinite", "grad_zero"]
    pd.testing.assert_frame_equal(factory[same], engine[same])
    for column in [*FLOAT_METRICS, "loss_value"]:
        np.testing.assert_allclose(factory[column], engine[column], rtol=1e-5, atol=1e-30)
    manifest = json.loads((tmp_path / "factory" / "manifest.json").read_text())
    assert {b["mode"] for b in manifest["batching"].values()} == {"vmap"}
    assert len(manifest["batching"]) == 2


@pytest.mark.parametrize("factory,kwargs,exact_counts", [
    ("gradprobe.bench.models.conv_resnet:conv_resnet",
     {"residual": True, "norm": "batchnorm"}, True),
    ("gradprobe.bench.models.conv_resnet:conv_resnet", {"residual": False}, True),
    # LayerNorm gradients have entries that are zero only by cancellation: whether they
    # round to exactly 0.0 depends on summation order, so counts are not compared.
    ("gradprobe.bench.models.transformer:transformer", {"residual": True, "norm_position": "post"},
     False),
    ("gradprobe.bench.models.transformer:transformer", {"residual": True, "norm_position": "pre"},
     False),
])
def test_vmap_and_loop_give_the_same_records(factory, kwargs, exact_counts):
    cell = Cell(ModelConfig(factory=factory, width=16, depth=2, **kwargs),
                DataConfig(batch_size=3), "cpu", "float64", (0, 1, 2))
    vmapped = generic._measure_chunk(cell, cell.seeds, use_vmap=True)
    looped = generic._measure_chunk(cell, cell.seeds, use_vmap=False)
    np.testing.assert_allclose(vmapped[1], looped[1], rtol=1e-12)  # loss
    assert list(vmapped[2]) == list(looped[2])  # fingerprints
    for m, metric in enumerate(METRICS):
        if metric in ("grad_nonfinite", "grad_zero"):
            if exact_counts:
                assert np.array_equal(vmapped[0][..., m], looped[0][..., m]), metric
            continue
        np.testing.assert_allclose(vmapped[0][..., m], looped[0][..., m], rtol=1e-10,
                                   atol=1e-300, err_msg=metric)


def test_examples_are_paired_and_name_their_layers():
    data = DataConfig(batch_size=2)
    for factory, variants in (
            ("gradprobe.bench.models.conv_resnet:conv_resnet", ({"residual": False},
                                                      {"residual": True})),
            ("gradprobe.bench.models.transformer:transformer", ({"residual": False},
                                                      {"residual": True}))):
        done = [measure_factory(Cell(ModelConfig(factory=factory, width=16, depth=3, **v),
                                     data, "cpu", "float32", (0, 1))) for v in variants]
        assert list(done[0].result.fingerprints) == list(done[1].result.fingerprints)
        assert not np.array_equal(done[0].result.values, done[1].result.values)
    transformer = done[1]
    names = [s.name for s in transformer.specs]
    assert "blocks.2.attn.in_proj_weight" in names and names[-1] == "head.bias"
    out_proj = [i for i, s in enumerate(transformer.specs) if "out_proj" in s.name]
    # nn.MultiheadAttention uses out_proj's weights without calling it: no output to probe.
    assert np.isnan(transformer.result.values[:, out_proj, METRICS.index("act_rms")]).all()
    assert np.isfinite(transformer.result.values[..., METRICS.index("grad_mean_abs")]).all()


def test_falls_back_to_a_loop_and_says_why(tmp_path):
    text = ('name = "gate"\n[model]\nfactory = "factory_models:sign_gate"\nwidth = 4\n'
            '[data]\ninput = "normal"\n[sweep]\nseeds = 8\n')
    run_sweep(load_config(write_config(tmp_path, text)), out=tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (batching,) = manifest["batching"].values()
    assert batching["mode"] == "loop"
    assert "data-dependent control flow" in batching["reason"]
    records = pd.read_parquet(tmp_path / "run" / "records")
    from factory_models import SignGate

    for seed in range(8):  # the loop's numbers are the literal module's
        torch.manual_seed(seed)
        net = SignGate(4)
        x = torch.randn(1, 4)
        torch.nn.functional.mse_loss(net(x), torch.zeros(1, 1)).backward()
        rows = records[records["seed"] == seed].set_index("param")
        for name, p in net.named_parameters():
            assert rows.loc[name, "grad_mean_abs"] == pytest.approx(p.grad.abs().mean().item(),
                                                                   rel=1e-6)


@pytest.mark.parametrize("model_lines,message", [
    ('factory = "no_such_module_xyz:f"', "cannot import no_such_module_xyz "
                                         "(ModuleNotFoundError"),
    ('factory = "factory_models:missing"', "has no attribute missing"),
    ('factory = "factory_models:NOT_CALLABLE"', "NOT_CALLABLE is a int, not a function"),
    ('factory = "factory_models:no_seed"', "must accept keyword arguments width, depth "
                                                 "and seed (missing: seed)"),
    ('factory = "factory_models:not_a_module"', "returned dict, not a torch.nn.Module"),
    ('factory = "factory_models:wrong_shape"', "forward on an input of shape (1, 4) "
                                                     "failed"),
    ('factory = "factory_models:bad_input_shape"', "input_shape must be a tuple of "
                                                         "positive integers"),
    ('factory = "factory_models:raises"', "raised ValueError: depth must be even"),
    # Regression (issue 14, item 11): SystemExit from a factory ended gradprobe silently.
    ('factory = "factory_models:exits"', "raised SystemExit: 3"),
    ('factory = "gradprobe.bench.models.conv_resnet:conv_resnet"\nnorm = "layernorm"',
     "conv_resnet supports norm = none or batchnorm"),
    ('factory = "gradprobe.bench.models.conv_resnet:conv_resnet"\nactivation = "tanh"',
     '[model] activation = "tanh": is not a parameter of the factory'),
    ('factory = "not a spec"', 'must look like "package.module:function"'),
    ('factory = "gradprobe.bench.models.mlp:blog_mlp"\ninit_rng = "device"',
     '[model] init_rng = "device": a factory model is built by torch.nn'),
])
def test_bad_factories_are_one_line_config_errors(tmp_path, model_lines, message):
    path = write_config(tmp_path, f'name = "x"\n[model]\nwidth = 4\n{model_lines}\n')
    with pytest.raises(ConfigError) as caught:
        plan_cells(load_config(path))  # planning a sweep imports and tries its factories
    text = str(caught.value)
    assert text.startswith(f"{path}: [model] ")
    assert message in text and "\n" not in text


def test_a_stored_config_parses_without_importing_the_factory():
    # Reports re-read the config from the manifest, perhaps where the model is not
    # importable: only planning a sweep (plan_cells) imports and tries the factory.
    config = parse_config('name = "x"\n[model]\nfactory = "no_such_module_xyz:f"\n')
    assert config.cells()[0].model.factory == "no_such_module_xyz:f"


def test_models_named_as_before_the_package_move_still_load_and_match(tmp_path):
    """gradprobe < 0.2 named its example models ``bench.models.*``: such a config still
    runs, and such records match today's cell for cell (compare: nothing unmatched)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import gradprobe

    old_name = "bench.models.mlp:blog_mlp"
    text = (f'name = "legacy"\n[model]\nfactory = "{old_name}"\nwidth = 4\n'
            "[sweep]\nseeds = 6\ndepth = [3]\nresidual = [false, true]\n")
    run = gradprobe.run(text, out=tmp_path / "new", progress=False)
    assert set(run.records()["factory"]) == {"gradprobe.bench.models.mlp:blog_mlp"}
    old = tmp_path / "old"
    shutil.copytree(run.path, old)
    for path in (old / "records").glob("cell-*.parquet"):
        table = pq.read_table(path)
        column = table.schema.get_field_index("factory")
        renamed = pa.array([old_name] * len(table), type=table.schema.field(column).type)
        pq.write_table(table.set_column(column, table.schema.field(column), renamed), path)
    assert set(pq.read_table(next((old / "records").glob("*.parquet")))["factory"].to_pylist()) \
        == {old_name}
    result = gradprobe.compare(old, run, n_resamples=199, write=False)
    assert result.passed and result.detail.cells.base_only.empty
    assert result.counts()["unchanged"] == len(result.verdicts) > 0


def test_vmap_that_gets_the_loss_wrong_falls_back_to_the_loop():
    """Regression: vmap ran Hugging Face GPT-2 without an error but with wrong attention
    masks, and its records were silently wrong; the chunk's first seed is now checked
    against the module's own forward."""
    cell = Cell(ModelConfig(factory="factory_models:vmap_sensitive", width=4),
                DataConfig(batch_size=2), "cpu", "float64", (0, 1, 2))
    done = measure_factory(cell)
    assert done.batching == "loop" and done.reason.startswith("VmapMismatch: vmap's loss")
    from factory_models import VmapSensitive

    for row, seed in enumerate(cell.seeds):
        torch.manual_seed(seed)
        net = VmapSensitive(4)
        x = torch.rand(2, 4)
        net = net.double()
        loss = net(x.double()).square().mean()
        assert done.result.loss[row] == pytest.approx(loss.item(), rel=1e-12)


def test_seeds_with_one_initial_state_are_refused(tmp_path):
    # Regression (issue 14, item 8): seeds whose initial states are identical (here a
    # factory that ignores the seed) were counted as independent replicates.
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import load_config
    from gradprobe.core.errors import UserError

    path = tmp_path / "c.toml"
    path.write_text('name = "const"\n[model]\nfactory = "factory_models:constant"\n'
                    'width = 2\n[data]\ninput = [[1.0, 2.0]]\n[sweep]\nseeds = 3\n')
    with pytest.raises(UserError, match="seeds 0 and 1 start from the same initial state"):
        run_sweep(load_config(path), out=tmp_path / "run", progress=False)
    assert not list((tmp_path / "run" / "records").glob("cell-*"))


def test_the_working_directory_is_not_searched_for_factories(tmp_path):
    # Regression (issue 14, item 11): the console script silently put the working directory
    # on sys.path, so a file there named like the factory's module was imported and run.
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n\ndef f(*, width, depth, seed):\n    return nn.Linear(width, 1)\n")
    (tmp_path / "c.toml").write_text('name = "cwd"\n[model]\nfactory = "mymodels:f"\n'
                                     "width = 2\n[sweep]\nseeds = 2\n")
    script = Path(sys.executable).parent / "gradprobe"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(script), "run", "c.toml", "--out", "run", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    assert "cannot import mymodels" in done.stderr and "PYTHONPATH=." in done.stderr
    assert not (tmp_path / "run").exists()
    done = subprocess.run([str(script), "run", "c.toml", "--out", "run", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": "."})
    assert done.returncode == 0, done.stderr
