"""The sweep's progress bar: seeds and cells done, rate and ETA (tqdm, on stderr)."""

from __future__ import annotations

from gradprobe.bench.plan.sweep import Cell


class SweepProgress:
    """tqdm over seeds, with cells done in the postfix (ETA from tqdm's rate)."""

    def __init__(self, cells: list[Cell], done: list[Cell], *, enabled: bool):
        from tqdm import tqdm

        self.cells_total = len(cells)
        self.cells_done = len(done)
        total = sum(len(c.seeds) for c in cells)
        initial = sum(len(c.seeds) for c in done)
        self.bar = tqdm(total=total, initial=initial, unit="seed", disable=not enabled,
                        dynamic_ncols=True, desc="sweep")
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"cells {self.cells_done}/{self.cells_total}", refresh=False)

    def update_counts(self, seeds: int, cells: int) -> None:
        """In-process progress: ``seeds`` more seeds measured, ``cells`` more cells written."""
        self.cells_done += cells
        self._postfix()
        self.bar.update(seeds)

    def task_done(self, cells: list[Cell]) -> None:
        """A remote task finished: all its cells' seeds at once."""
        self.update_counts(sum(len(c.seeds) for c in cells), len(cells))

    def close(self) -> None:
        self.bar.close()
