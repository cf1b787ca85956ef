"""Real architectures from Hugging Face ``transformers``, random weights from small configs.

Factories (``[model] factory``) and the matching batches (``[data] factory``, see
:mod:`gradprobe.bench.models.batches`), all with ``[data] loss = "model"`` (the model's own loss):

* ``gpt2`` + ``causal_tokens``: ``GPT2LMHeadModel`` (pre-LN: ``h + f(LN(h))``, a final
  LayerNorm; Radford et al. 2019), ``n_layer = depth``, ``n_embd = width``; random token ids,
  the language-modelling loss (``labels = input_ids``, shifted inside the model).
* ``bert`` + ``masked_tokens``: ``BertForMaskedLM`` (post-LN: ``LN(h + f(h))``; Devlin et
  al. 2019) of the same sizes; random token ids, 15% of each sequence (at least one
  position) replaced by the ``[MASK]`` id 0 and predicted, the masked-LM loss.
* ``resnet`` + ``labelled_images``: ``ResNetForImageClassification`` (basic blocks with
  BatchNorm, He et al. 2016) with one stage of ``depth`` blocks of ``width`` channels; random
  16x16 images and class labels, the classification loss.

The skips are part of these implementations: ``residual``, ``norm`` and ``norm_position``
are not parameters (setting them is a config error). The comparisons they serve are across
``depth`` within a preset and pre-LN (``gpt2``) vs post-LN (``bert``) across presets.
Dropout is 0 (a measurement at initialisation, reproducible seed by seed) and attention is
the ``eager`` implementation (the literal softmax(QK^T)V). No weights are downloaded.

The token embedding and the output projection are untied (``tie_word_embeddings=False``):
tied, as in the released models, ``wte.weight``'s gradient is the sum of the input side's
and the LM head's (about half each in a depth-4 GPT-2 here), so the input-side weight of the
report would mostly measure the output side. Untied, the embedding is the input side and
``lm_head.weight`` (``cls.predictions.decoder.weight``) the output side.
"""

from __future__ import annotations

import torch
from torch import nn

from gradprobe.bench.models.transformer import head_count

VOCAB = 128  # token ids 0..127; 0 is [MASK] for bert
SEQUENCE = 16  # tokens per sequence
IMAGE = 16  # pixels per side
CLASSES = 10
MASK_ID = 0
MASK_FRACTION = 0.15  # BERT's masking rate (without its 80/10/10 replacement rule)


def _transformers():
    try:
        import transformers
    except ModuleNotFoundError:
        raise ModuleNotFoundError("transformers is not installed: "
                                  "pip install 'gradprobe[models]'") from None
    return transformers


def gpt2(*, width: int, depth: int, seed: int) -> nn.Module:
    """A ``GPT2LMHeadModel`` with ``depth`` blocks of model size ``width``."""
    del seed  # the caller has called torch.manual_seed(seed)
    hf = _transformers()
    config = hf.GPT2Config(vocab_size=VOCAB, n_positions=SEQUENCE, n_embd=width,
                           n_layer=depth, n_head=head_count(width), resid_pdrop=0.0,
                           embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=VOCAB - 1,
                           eos_token_id=VOCAB - 1, attn_implementation="eager",
                           tie_word_embeddings=False)
    model = hf.GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # what transformers falls back to, minus its warning
    return model


def bert(*, width: int, depth: int, seed: int) -> nn.Module:
    """A ``BertForMaskedLM`` with ``depth`` layers of hidden size ``width`` (MLP ``4 width``)."""
    del seed
    hf = _transformers()
    config = hf.BertConfig(vocab_size=VOCAB, hidden_size=width, num_hidden_layers=depth,
                           num_attention_heads=head_count(width), intermediate_size=4 * width,
                           max_position_embeddings=SEQUENCE, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0, attn_implementation="eager",
                           tie_word_embeddings=False)
    model = hf.BertForMaskedLM(config)
    # Untied, transformers leaves the decoder's bias apart from cls.predictions.bias, which
    # then gets no gradient; the head's bias is one parameter, as in the tied model.
    head = model.cls.predictions
    if head.decoder.bias is not head.bias:
        head.decoder.bias = head.bias
    return model


def resnet(*, width: int, depth: int, seed: int) -> nn.Module:
    """A ``ResNetForImageClassification``: stem to ``width`` channels, one stage of ``depth``
    basic blocks, ``CLASSES`` classes."""
    del seed
    hf = _transformers()
    config = hf.ResNetConfig(num_channels=3, embedding_size=width, hidden_sizes=[width],
                             depths=[depth], layer_type="basic", num_labels=CLASSES)
    return hf.ResNetForImageClassification(config)


def causal_tokens(*, seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    """``input_ids`` ``(batch_size, SEQUENCE)`` uniform over the vocabulary; ``labels`` the
    same ids (GPT-2 shifts them to predict the next token)."""
    del seed
    ids = torch.randint(0, VOCAB, (batch_size, SEQUENCE))
    return {"input_ids": ids, "labels": ids}


def masked_tokens(*, seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    """``input_ids`` ``(batch_size, SEQUENCE)`` from ids 1..VOCAB-1 with ``k`` random
    positions per sequence set to ``MASK_ID``; ``labels`` the original ids there, -100
    (ignored) elsewhere. ``k = max(1, round(0.15 * SEQUENCE))``: never an empty loss."""
    del seed
    ids = torch.randint(1, VOCAB, (batch_size, SEQUENCE))
    k = max(1, round(MASK_FRACTION * SEQUENCE))
    masked = torch.rand(batch_size, SEQUENCE).argsort(dim=1)[:, :k]
    labels = torch.full_like(ids, -100).scatter(1, masked, ids.gather(1, masked))
    return {"input_ids": ids.scatter(1, masked, MASK_ID), "labels": labels}


def labelled_images(*, seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    """``pixel_values`` ``(batch_size, 3, IMAGE, IMAGE)`` standard normal; ``labels``
    ``(batch_size,)`` uniform over the classes."""
    del seed
    pixels = torch.randn(batch_size, 3, IMAGE, IMAGE)
    return {"pixel_values": pixels, "labels": torch.randint(0, CLASSES, (batch_size,))}
