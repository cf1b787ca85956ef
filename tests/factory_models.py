"""Factories for tests/test_factory.py: models vmap cannot batch, and broken factories."""

from __future__ import annotations

import torch
from torch import nn


class SignGate(nn.Module):
    """``W2 relu(W1 x)``, negated when the input sums to less than 0: data-dependent control
    flow, which vmap cannot batch."""

    def __init__(self, width: int):
        super().__init__()
        self.first = nn.Linear(width, width)
        self.second = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.second(torch.relu(self.first(x)))
        return out if x.sum() > 0 else -out


def sign_gate(*, width: int, depth: int, seed: int) -> SignGate:
    return SignGate(width)


def not_a_module(*, width: int, depth: int, seed: int):
    return {"width": width}


def no_seed(width: int, depth: int) -> nn.Module:
    return nn.Linear(width, 1)


def wrong_shape(*, width: int, depth: int, seed: int) -> nn.Module:
    return nn.Linear(width + 1, 1)


def bad_input_shape(*, width: int, depth: int, seed: int) -> nn.Module:
    module = nn.Linear(width, 1)
    module.input_shape = (width, 0)
    return module


def raises(*, width: int, depth: int, seed: int) -> nn.Module:
    raise ValueError("depth must be even")


def exits(*, width: int, depth: int, seed: int) -> nn.Module:
    raise SystemExit(3)


NOT_CALLABLE = 3


# Token-id models and [data] factories (gradprobe.bench.models.batches).
VOCAB = 11


class TinyLM(nn.Module):
    """Embedding -> Linear over the vocabulary: ``(B, T)`` token ids -> ``(B, T, VOCAB)``."""

    def __init__(self, width: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.out = nn.Linear(width, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(ids)))


def tiny_lm(*, width: int, depth: int, seed: int) -> TinyLM:
    return TinyLM(width)


def next_tokens(*, seed: int, batch_size: int, model: nn.Module):
    """Random ids and their successors as class targets."""
    from gradprobe.bench.models.batches import Batch

    ids = torch.randint(0, model.embed.num_embeddings, (batch_size, 6))
    return Batch(ids, (ids + 1) % VOCAB)


class Output:
    def __init__(self, loss: torch.Tensor):
        self.loss = loss


class KeywordLM(TinyLM):
    """Takes keyword arguments and returns an object with ``.loss``, as Hugging Face does."""

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> Output:
        logits = super().forward(input_ids)
        return Output(nn.functional.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1)))


def keyword_lm(*, width: int, depth: int, seed: int) -> KeywordLM:
    return KeywordLM(width)


def keyword_tokens(*, seed: int, batch_size: int, **extra) -> dict:
    ids = torch.randint(0, VOCAB, (batch_size, 6))
    return {"input_ids": ids, "labels": torch.roll(ids, 1, dims=1)}


def no_batch_size(*, seed: int) -> torch.Tensor:
    return torch.zeros(1)


class VmapSensitive(nn.Module):
    """Doubles its output when vmap batches it: a model vmap runs but gets wrong, as it does
    Hugging Face GPT-2's attention masks."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out * 2 if torch._C._functorch.is_batchedtensor(x) else out


def vmap_sensitive(*, width: int, depth: int, seed: int) -> VmapSensitive:
    return VmapSensitive(width)


def constant(*, width: int, depth: int, seed: int) -> nn.Module:
    """Ignores the seed: every seed starts from the same weights (refused by the runner)."""
    module = nn.Linear(width, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(0.5)
    return module


class Escaped(nn.Module):
    """A parameter whose name carries a terminal escape sequence (red text)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_parameter("w\x1b[31m", nn.Parameter(torch.randn(1, width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ getattr(self, "w\x1b[31m").T


def escaped(*, width: int, depth: int, seed: int) -> nn.Module:
    return Escaped(width)
