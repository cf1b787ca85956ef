"""Parameters grouped by module path, so that a report fits any model, not only the MLP.

A model built from repeated blocks names its parameters ``<container>.<i>.<role>``
(``blocks.3.attn.out_proj.weight``, GPT-2's ``h.3.attn.c_attn.weight``): the first numeric
path component is the block index, what follows it the role, which recurs in every block.
Parameters outside any block (``head.weight``, ``final_norm.bias``) keep their full name as
their role and get no block. Per-role profiles put the block index on the x axis, so a
200-parameter model draws a dozen short curves instead of 200 tick labels.

The reference MLP (``layers.<i>.weight``) has one parameter per block: its report keeps the
layer index (:func:`is_blocked` is False for it).
"""

from __future__ import annotations

import pandas as pd

# Beyond this many parameters per configuration a one-row-per-parameter table or box plot no
# longer fits a page; the report shows roles instead.
MANY_PARAMS = 24


def block_role(param: str) -> tuple[int | None, str]:
    """``("h.3.attn.c_attn.weight")`` -> ``(3, "attn.c_attn.weight")``;
    ``"head.weight"`` -> ``(None, "head.weight")``. A numeric last component (a bare
    ``nn.ParameterList`` entry) is an index, not a block."""
    parts = param.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return int(part), ".".join(parts[i + 1:])
    return None, param


def with_blocks(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with a ``param`` column) plus ``block`` (float, NaN outside blocks) and
    ``role``; a copy."""
    pairs = [block_role(p) for p in frame["param"]]
    frame = frame.copy()
    frame["block"] = pd.array([b for b, _ in pairs], dtype="Float64").astype(float)
    frame["role"] = [r for _, r in pairs]
    return frame


def is_blocked(params: pd.Series) -> bool:
    """Whether parameters form repeated blocks with more than one role each (a transformer,
    a ResNet), as opposed to the MLP's one weight per layer."""
    grouped = with_blocks(pd.DataFrame({"param": pd.unique(params)}))
    inside = grouped[grouped["block"].notna()]
    return bool(len(inside)) and inside.groupby("block")["role"].nunique().max() > 1


def role_order(frame: pd.DataFrame) -> list[str]:
    """Roles in model order: first appearance by ``layer`` (input side first)."""
    return list(frame.sort_values("layer")["role"].drop_duplicates())
