"""What tests share besides fixtures: paths, config texts, and helpers that run them.

Imported as ``support`` (pytest puts ``tests/`` on ``sys.path``), never as ``tests.support``:
the tests must not depend on the repository root being importable."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "bench" / "configs" / "smoke.toml"


def write_config(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


HOSTILE_NAME = '</title><script>window.__pwned = "name"</script><b>bold</b>'
HOSTILE_DESCRIPTION = ('<img src=x onerror="window.__pwned = 1"><script>alert("description")'
                       '</script>')
HOSTILE_DIR = 'run"><img src=x onerror=alert(1)>'  # a directory name cannot hold "/"


SMOKE_TEXT = SMOKE.read_text(encoding="utf-8")


def smoke_text(*, model: str = "", sweep_residual: bool = True, seeds: int | None = None,
               depth: str | None = None, extra: str = "") -> str:
    """The smoke config with edits: extra ``[model]`` lines, the residual axis removed,
    another seed count or depth axis, extra sections."""
    text = SMOKE_TEXT
    if model:
        key = model.split("=")[0].strip()
        lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
        text = "\n".join(lines).replace("[model]", f"[model]\n{model}") + "\n"
    if not sweep_residual:
        text = text.replace("residual = [false, true]\n", "")
    if seeds is not None:
        text = text.replace("seeds = 16", f"seeds = {seeds}")
    if depth is not None:  # the headline must name a depth the sweep runs
        first = depth.strip("[]").split(",")[0].strip()
        text = text.replace("depth = [2, 3, 4]", f"depth = {depth}").replace(
            "headline = { depth = 3,", f"headline = {{ depth = {first},")
    return text + extra


def run_text(directory: Path, text: str, name: str = "variant.toml") -> Path:
    """Run config ``text`` into ``directory`` (in-process, no progress bar)."""
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import parse_config

    run_sweep(parse_config(text, source=name), out=directory, progress=False)
    return directory


TRAIN_SMOKE = """name = "train-smoke"
description = "Tiny training sweep for tests."
[model]
width = 8
[train]
steps = 30
optimizer = "adam"
lr = 0.02
samples = 16
log_every = 10
[sweep]
seeds = 10
depth = [3, 6]
residual = [false, true]
[report]
headline = { depth = 3 }
target_loss = [0.5, 0.2]
"""




# The transformer preset, small: pre- and post-LN, plain and residual, 2 and 3 blocks of
# width 16 (3 blocks: 40 parameters, enough for the report's per-role headline).
TRANSFORMER_SMALL = """name = "transformer-small"
description = "Transformer blocks, small, for tests."
[model]
factory = "gradprobe.bench.models.transformer:transformer"
width = 16
out_features = 1
[data]
batch_size = 2
input = "normal"
target = 0.0
[sweep]
seeds = 5
depth = [2, 3]
residual = [false, true]
norm_position = ["pre", "post"]
[report]
headline = { depth = 3, norm_position = "pre" }
"""
