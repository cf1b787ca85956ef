"""Measuring gradients: the seed-batched MLP engine, the generic factory engine, metrics
and training."""
