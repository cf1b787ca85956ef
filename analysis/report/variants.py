"""What a run's ``residual`` flag stands for, and the words the report uses for its values.

The built-in MLP and conv ResNet, and any factory whose signature takes ``residual``, switch
skip connections off and on: their cells are *plain* (no skip connections) or *residual*.
A factory that does not take it (Hugging Face GPT-2 or BERT) has the skip connections its
architecture has; its cells carry ``residual = false`` only as the config's default, and
calling them "plain (no skip connections)" would be false. Those cells are the model *as
built*. The data keep the flag; only the words change.
"""

from __future__ import annotations

from gradprobe.bench.store.manifest import Manifest

AS_BUILT = "as built"
SWITCHED = {"plain": "plain", "residual": "residual"}


def residual_switch_applies(manifest: Manifest) -> bool:
    """Whether any cell of the run switched skip connections with ``residual``: a cell of a
    built-in model, or of a factory that takes ``residual`` (or ``**kwargs``). Manifests
    from before factories recorded their ``parameters`` count as switching (the old wording)."""
    for cell in manifest.cells:
        spec = cell.axes.get("factory", "")
        if not spec:
            return True
        names = manifest.factories.get(spec, {}).get("parameters")
        if names is None or "residual" in names or "**" in names:
            return True
    return False


def variant_labels(manifest: Manifest) -> dict[str, str]:
    """Display name per variant shown: ``{"plain": "plain", "residual": "residual"}``, or
    ``{"plain": "as built"}`` when the switch meant nothing to the run's models."""
    return switch_labels(residual_switch_applies(manifest))


def switch_labels(switched: bool) -> dict[str, str]:
    """:func:`variant_labels` from :func:`residual_switch_applies`' answer, for pages that
    keep the answer instead of the manifest (the history)."""
    return dict(SWITCHED) if switched else {"plain": AS_BUILT}


def variant_name(residual: bool, *, switched: bool) -> str:
    """The word for a cell's ``residual`` flag: ``plain``, ``residual`` or ``as built``."""
    variant = "residual" if residual else "plain"
    return switch_labels(switched).get(variant, variant)
