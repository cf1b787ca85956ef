"""Parameters grouped by module path: block index and role."""

from __future__ import annotations

import pandas as pd
import pytest

from gradprobe.analysis.report.param_groups import block_role, is_blocked, role_order, with_blocks


@pytest.mark.parametrize("param,expected", [
    ("h.3.attn.c_attn.weight", (3, "attn.c_attn.weight")),
    ("blocks.12.mlp.0.weight", (12, "mlp.0.weight")),
    ("encoder.layer.0.attention.self.query.weight", (0, "attention.self.query.weight")),
    ("head.weight", (None, "head.weight")),
    ("scales.3", (None, "scales.3")),  # a bare ParameterList entry is no block
])
def test_block_index_is_the_first_numeric_path_component(param, expected):
    assert block_role(param) == expected


def test_blocks_need_more_than_one_role_so_the_mlp_keeps_its_layer_index():
    mlp = pd.Series([f"layers.{i}.weight" for i in range(5)])
    transformer = pd.Series(["blocks.0.attn.in_proj_weight", "blocks.0.mlp.0.weight",
                             "blocks.1.attn.in_proj_weight", "blocks.1.mlp.0.weight",
                             "head.weight"])
    assert not is_blocked(mlp) and is_blocked(transformer)


def test_roles_in_model_order_and_outside_parameters_without_block():
    frame = with_blocks(pd.DataFrame({"param": ["blocks.1.b.weight", "blocks.0.a.weight",
                                                "blocks.0.b.weight", "head.weight"],
                                      "layer": [3, 0, 1, 4]}))
    assert role_order(frame) == ["a.weight", "b.weight", "head.weight"]
    assert frame["block"].isna().tolist() == [False, False, False, True]


def test_the_block_index_is_the_number_that_varies_most():
    """Bug: Hugging Face's ResNet names blocks ``resnet.encoder.stages.0.layers.3...``; the
    first number (the only stage, 0) was taken as the block index, so every block was
    "block 0" and every parameter its own role: a profile of single points."""
    resnet = [f"resnet.encoder.stages.0.layers.{i}.layer.{j}.convolution.weight"
              for i in range(4) for j in range(2)] + ["resnet.embedder.embedder.convolution.weight",
                                                       "classifier.1.weight"]
    frame = with_blocks(pd.DataFrame({"param": resnet}))
    inside = frame[frame["block"].notna()]
    assert sorted(set(inside["block"])) == [0, 1, 2, 3]
    assert set(inside["role"]) == {"layer.0.convolution.weight", "layer.1.convolution.weight"}
    assert frame["block"].isna().sum() == 2  # the stem and the classifier lie outside
    assert is_blocked(frame["param"])


def test_nested_indices_of_equal_count_take_the_outermost():
    params = [f"blocks.{i}.mlp.{j}.weight" for i in range(2) for j in (0, 2)]
    frame = with_blocks(pd.DataFrame({"param": params}))
    assert frame["block"].tolist() == [0, 0, 1, 1]
    assert set(frame["role"]) == {"mlp.0.weight", "mlp.2.weight"}
