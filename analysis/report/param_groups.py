"""Parameters grouped by module path, so that a report fits any model, not only the MLP.

A model built from repeated blocks names its parameters ``<container>.<i>.<role>``
(``blocks.3.attn.out_proj.weight``, GPT-2's ``transformer.h.3.attn.c_attn.weight``): the
block index is the numeric path component that takes the most values across the model (its
container is the model's longest repeated stack; the outermost one on a tie), what follows it
the role, which recurs in every block. Hugging Face's ResNet names its blocks
``resnet.encoder.stages.0.layers.3.layer.1.convolution.weight``: the stage (``stages.0``) is
the first number but takes one value in a one-stage model, the block is ``layers.3``.
Parameters outside any block (``head.weight``, ``final_norm.bias``) keep their full name as
their role and get no block. Per-role profiles put the block index on the x axis, so a
200-parameter model draws a dozen short curves instead of 200 tick labels.

The reference MLP (``layers.<i>.weight``) has one parameter per block: its report keeps the
layer index (:func:`is_blocked` is False for it).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

# Beyond this many parameters per configuration a one-row-per-parameter table or box plot no
# longer fits a page; the report shows roles instead.
MANY_PARAMS = 24


def block_container(params: Iterable[str]) -> str | None:
    """The path in front of the block index: of the prefixes followed by a number (never the
    last component: a bare ``nn.ParameterList`` entry is an index, not a block), the one
    followed by the most distinct numbers, the shortest on a tie; None when there is none.
    ``["h.0.a.w", "h.1.a.w", "h.1.mlp.0.w"]`` -> ``"h"``."""
    numbers: dict[str, set[str]] = {}
    for param in set(params):
        parts = param.split(".")
        for i, part in enumerate(parts[:-1]):
            if part.isdigit():
                numbers.setdefault(".".join(parts[:i]), set()).add(part)
    if not numbers:
        return None
    return max(numbers, key=lambda prefix: (len(numbers[prefix]), -prefix.count("."),
                                            -len(prefix)))


def block_role(param: str, container: str | None = None) -> tuple[int | None, str]:
    """``("h.3.attn.c_attn.weight")`` -> ``(3, "attn.c_attn.weight")``;
    ``"head.weight"`` -> ``(None, "head.weight")``. ``container``: the path in front of the
    block index (:func:`block_container` of the model's parameters); by default the one of
    ``param`` alone, i.e. its first numeric component."""
    container = block_container([param]) if container is None else container
    prefix = f"{container}." if container else ""
    rest = param[len(prefix):].split(".") if param.startswith(prefix) else []
    if len(rest) > 1 and rest[0].isdigit():
        return int(rest[0]), ".".join(rest[1:])
    return None, param


def with_blocks(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with a ``param`` column) plus ``block`` (float, NaN outside blocks) and
    ``role``; a copy. The block index is found from all of the frame's parameters."""
    container = block_container(frame["param"].astype(str))
    pairs = [block_role(p, container) for p in frame["param"]]
    frame = frame.copy()
    frame["block"] = pd.array([b for b, _ in pairs], dtype="Float64").astype(float)
    frame["role"] = [r for _, r in pairs]
    return frame


def numbered_layers(params: Iterable[str]) -> bool:
    """Whether every name is the reference MLP's ``layers.<i>.<kind>``: its parameters are
    layers by number; a factory model's are named (``transformer.wte.weight``)."""
    names = [str(p) for p in params]
    return bool(names) and all(p.startswith("layers.") for p in names)


def is_blocked(params: pd.Series) -> bool:
    """Whether parameters form repeated blocks with more than one role each (a transformer,
    a ResNet), as opposed to the MLP's one weight per layer."""
    grouped = with_blocks(pd.DataFrame({"param": pd.unique(params)}))
    inside = grouped[grouped["block"].notna()]
    return bool(len(inside)) and inside.groupby("block")["role"].nunique().max() > 1


def role_order(frame: pd.DataFrame) -> list[str]:
    """Roles in model order: first appearance by ``layer`` (input side first)."""
    return list(frame.sort_values("layer")["role"].drop_duplicates())
