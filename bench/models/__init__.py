"""Example models for ``[model] factory``: each module has a function
``f(width=..., depth=..., seed=..., **keys)`` that returns an ``nn.Module`` (see
:mod:`gradprobe.bench.models.factory`)."""
