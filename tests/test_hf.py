"""Real architectures (bench/models/hf.py): each preset's records equal, seed by seed, a
literal loop (torch.manual_seed(s), build, batch, forward, loss, backward, param.grad)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.bench.engine.factory_training import train_factory_cell
from gradprobe.bench.engine.generic import measure_factory
from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.engine.training import task_seed
from gradprobe.bench.execute.runner import plan_cells
from gradprobe.bench.models import hf
from gradprobe.bench.plan.config import DataConfig, ModelConfig, TrainConfig
from gradprobe.bench.plan.loader import load_config
from gradprobe.bench.plan.sweep import Cell

pytest.importorskip("transformers", reason="needs the models extra: pip install "
                                           "'gradprobe[models]'")

PRESETS = {"gpt2": "causal_tokens", "bert": "masked_tokens", "resnet": "labelled_images"}
SEEDS = (0, 1, 5)
WIDTH, DEPTH, BATCH = 32, 2, 3
L2 = METRICS.index("grad_l2")


def literal(name: str, seed: int, dtype: torch.dtype) -> tuple[float, dict[str, float]]:
    """One seed the way a user would write it: loss and per-parameter gradient L2 norms."""
    torch.manual_seed(seed)
    net = getattr(hf, name)(width=WIDTH, depth=DEPTH, seed=seed)
    batch = getattr(hf, PRESETS[name])(seed=seed, batch_size=BATCH)
    net = net.to(dtype)
    batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    loss = net(**batch).loss
    loss.backward()
    return loss.item(), {n: p.grad.norm().item() for n, p in net.named_parameters()}


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-5), ("float32", 1e-4)])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_records_equal_a_literal_loop(name, dtype, rtol):
    cell = Cell(ModelConfig(factory=f"gradprobe.bench.models.hf:{name}", width=WIDTH, depth=DEPTH),
                DataConfig(batch_size=BATCH, loss="model",
                           data_factory=f"gradprobe.bench.models.hf:{PRESETS[name]}"),
                "cpu", dtype, SEEDS)
    done = measure_factory(cell)
    for row, seed in enumerate(SEEDS):
        loss, grads = literal(name, seed, getattr(torch, dtype))
        assert done.result.loss[row] == pytest.approx(loss, rel=rtol)
        assert [s.name for s in done.specs] == list(grads)
        np.testing.assert_allclose(done.result.values[row, :, L2], list(grads.values()),
                                   rtol=rtol, err_msg=f"{name} seed {seed}")
    assert np.isfinite(done.result.values[..., L2]).all()
    assert (done.result.values[..., L2] > 0).any()


def test_gpt2_is_pre_ln_and_bert_post_ln():
    gpt2 = hf.gpt2(width=WIDTH, depth=DEPTH, seed=0)
    bert = hf.bert(width=WIDTH, depth=DEPTH, seed=0)
    assert hasattr(gpt2.transformer, "ln_f")  # the final LayerNorm of a pre-LN stack
    layer = bert.bert.encoder.layer[0]
    assert hasattr(layer.output, "LayerNorm")  # LN(h + f(h)) after each sub-layer


def test_masked_tokens_predict_at_least_one_position_per_sequence():
    torch.manual_seed(3)
    batch = hf.masked_tokens(seed=3, batch_size=5)
    masked = batch["labels"] != -100
    assert (masked.sum(dim=1) == round(0.15 * hf.SEQUENCE)).all()
    assert (batch["input_ids"][masked] == hf.MASK_ID).all()
    assert (batch["input_ids"][~masked] != hf.MASK_ID).all()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_load_and_refuse_a_residual_axis(preset, tmp_path):
    config = load_config(preset)
    assert {c.model.depth for c in config.cells()} == {2, 4, 8}
    text = (f'name = "x"\n[model]\nfactory = "gradprobe.bench.models.hf:{preset}"\n'
            "residual = true\n"
            f'[data]\nloss = "model"\nfactory = "gradprobe.bench.models.hf:{PRESETS[preset]}"\n')
    (tmp_path / "x.toml").write_text(text)
    with pytest.raises(Exception, match="is not a parameter of the factory"):
        plan_cells(load_config(str(tmp_path / "x.toml")))


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_training_equals_one_module_and_adam_per_seed(name):
    train = TrainConfig(steps=3, optimizer="adam", lr=0.01, samples=2, log_every=3)
    data = DataConfig(batch_size=BATCH, loss="model",
                      data_factory=f"gradprobe.bench.models.hf:{PRESETS[name]}")
    cell = Cell(ModelConfig(factory=f"gradprobe.bench.models.hf:{name}", width=WIDTH, depth=DEPTH),
                data, "cpu", "float64", (0, 4), (train,))
    (result,) = train_factory_cell(cell)
    draw = getattr(hf, PRESETS[name])
    for row, seed in enumerate(cell.seeds):
        torch.manual_seed(seed)
        net = getattr(hf, name)(width=WIDTH, depth=DEPTH, seed=seed)
        draw(seed=seed, batch_size=BATCH)  # the at-initialisation batch
        torch.manual_seed(task_seed(seed))
        task = draw(seed=seed, batch_size=train.samples)
        net = net.double()
        optimizer = torch.optim.Adam(net.parameters(), lr=train.lr)
        losses = []
        for step in range(train.steps + 1):
            optimizer.zero_grad()
            loss = net(**task).loss
            loss.backward()
            losses.append(loss.item())
            if step < train.steps:
                optimizer.step()
        np.testing.assert_allclose(result.loss[row], losses, rtol=1e-5)
        assert losses[-1] < losses[0]
        last = [p.grad.norm().item() for p in net.parameters()]
        # atol: attention's key bias has a gradient of exactly 0 in exact arithmetic
        # (softmax is shift-invariant per query); what remains is rounding, about 1e-20.
        np.testing.assert_allclose(result.values[row, -1, :, L2], last, rtol=1e-5,
                                   atol=1e-15)


@pytest.mark.parametrize("name,embedding,head", [
    ("gpt2", "transformer.wte.weight", "lm_head.weight"),
    ("bert", "bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight")])
def test_the_embedding_is_not_tied_to_the_output_head(name, embedding, head):
    """Review: with tied weights the input-side weight's gradient was half the LM head's,
    so the report's "input side" mostly measured the output side."""
    net = getattr(hf, name)(width=WIDTH, depth=DEPTH, seed=0)
    params = dict(net.named_parameters())
    assert embedding in params and head in params
    assert params[embedding].data_ptr() != params[head].data_ptr()


def test_a_token_model_without_a_data_factory_is_told_how_to_fix_it(tmp_path):
    """Review: gpt2 with no [data] section failed with torch's dtype error and no hint."""
    from gradprobe.core.errors import ConfigError

    (tmp_path / "g.toml").write_text('name = "g"\n[model]\nfactory = '
                                     '"gradprobe.bench.models.hf:gpt2"\nwidth = 16\n'
                                     "[sweep]\nseeds = 2\ndepth = [2]\n")
    with pytest.raises(ConfigError, match=r"needs \[data\] factory = .*causal_tokens.*"
                                          r"\[data\] loss = \"model\""):
        plan_cells(load_config(str(tmp_path / "g.toml")))
