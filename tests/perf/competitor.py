"""A competing PyTorch process for ``make perf-loaded``: 256x256 matmuls in a loop on torch's
default thread pool, as a training job or another CI job on a shared runner would run.

Runs until it is terminated. ``python tests/perf/competitor.py``.
"""

from __future__ import annotations

import torch


def main() -> None:
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    while True:
        a = torch.tanh(a @ b)


if __name__ == "__main__":
    main()
