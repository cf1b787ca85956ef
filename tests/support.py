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




SCRATCH_CONFIG = """name = "scratch"
description = "A user's own model measured at each commit of its repository."
[model]
factory = "scratchnet:make"
[sweep]
seeds = 6
depth = [3]
width = [8]
[report]
headline = { depth = 3, width = 8 }
"""

SCRATCH_MODEL = '''"""A user's model: an MLP whose initial weights are scaled by SCALE."""
import torch
from torch import nn

SCALE = {scale}  # revision {revision}


def make(*, width, depth, seed, **kwargs):
    sizes = [width] * depth + [1]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=False))
        if i < depth - 1:
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(SCALE)
    return net
'''


def git(repo: Path, *args: str, date: str | None = None, check: bool = True) -> str:
    """``git -C repo args`` with a fixed identity (and commit date, when given)."""
    import os
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    if date:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=env, check=check)
    return done.stdout.strip()


def scratch_repo(repo: Path, *, commits: int = 6, change_at: int = 4) -> list[str]:
    """A git repository holding ``scratchnet.py`` (a factory model) and ``scratch.toml``,
    committed ``commits`` times a day apart; the initial weights scale by 1.5 from commit
    ``change_at`` (1-based) on. Returns the commit hashes, oldest first."""
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    (repo / "scratch.toml").write_text(SCRATCH_CONFIG, encoding="utf-8")
    shas = []
    for i in range(1, commits + 1):
        scale = "1.5" if i >= change_at else "1.0"
        (repo / "scratchnet.py").write_text(SCRATCH_MODEL.format(scale=scale, revision=i),
                                            encoding="utf-8")
        git(repo, "add", "scratchnet.py", "scratch.toml")
        git(repo, "commit", "--quiet", "-m", f"commit {i}", date=f"2026-01-0{i}T12:00:00Z")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


# The transformer preset, small: pre- and post-LN, plain and residual, 2 and 3 blocks of
# width 16 (3 blocks: 40 parameters, enough for the report's per-role headline).
GPT2_SMALL = """name = "gpt2-small"
description = "Hugging Face GPT-2, tiny, for tests: a factory that takes no residual."
[model]
factory = "gradprobe.bench.models.hf:gpt2"
width = 16
[data]
factory = "gradprobe.bench.models.hf:causal_tokens"
loss = "model"
batch_size = 2
[sweep]
seeds = 4
depth = [2, 3, 4]
[report]
headline = { depth = 3 }
"""

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


def check_embedded_figures(module, monkeypatch) -> dict[str, list[str]]:
    """Replace ``module.embed`` so that each figure it would embed is checked for
    overlapping tick labels and closed; returns ``{figure key: overlaps}``, filled as the
    report's figure functions run (the figure's alt text stands in for its markup)."""
    import matplotlib.pyplot as plt

    from gradprobe.analysis.report.plot_style import overlapping_tick_labels

    overlaps: dict[str, list[str]] = {}

    def keep(figure, *, key, alt):
        overlaps[key] = overlapping_tick_labels(figure)
        plt.close(figure)
        return alt

    monkeypatch.setattr(module, "embed", keep)
    return overlaps
