"""The blog's MLP as a factory model: ``factory = "gradprobe.bench.models.mlp:blog_mlp"``.

The same network as the built-in engine's (:class:`gradprobe.bench.models.reference.ReferenceMLP`,
built
after ``torch.manual_seed(seed)`` in the same order), so measuring it through the generic
``torch.func`` path must give the engine's records: the tests use it for exactly that, and it
is the template for writing a factory of one's own.
"""

from __future__ import annotations

import torch

from gradprobe.bench.models.reference import ReferenceMLP
from gradprobe.bench.plan.config import ModelConfig


class BlogMLP(ReferenceMLP):
    """:class:`ReferenceMLP` whose forward returns only the network output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[-1]


def blog_mlp(*, width: int, depth: int, seed: int, **model_keys) -> BlogMLP:
    """Every other ``[model]`` key (``residual``, ``activation``, ``norm`` ...) is passed on
    to :class:`gradprobe.bench.plan.config.ModelConfig`; ``seed`` is unused (the caller has already
    called
    ``torch.manual_seed(seed)``)."""
    del seed
    return BlogMLP(ModelConfig(width=width, depth=depth, **model_keys))
