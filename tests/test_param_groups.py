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
