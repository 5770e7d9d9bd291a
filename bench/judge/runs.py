"""Running every judge over one setting's simulated releases (one worker process's job)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bench.judge.judges import JUDGES
from bench.judge.scenarios import Setting, simulate

CHUNK = 250
"""Releases simulated at once: bounds memory to a few hundred MB per process."""


def rollback_times(setting: Setting, runs: int, seed: int) -> dict[str, np.ndarray]:
    """Every judge's rollback time per run (inf: never), on the same counters."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in JUDGES}
    for index, size in enumerate(_chunks(runs)):
        counters = simulate(setting, size, seed * 1000 + index)
        for name, judge in JUDGES.items():
            out[name].append(judge(counters))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def times_for(task: tuple[Setting, int, int]) -> dict[str, np.ndarray]:
    """`rollback_times` taking one tuple, for a process pool."""
    setting, runs, seed = task
    return rollback_times(setting, runs, seed)


def _chunks(runs: int) -> Iterator[int]:
    while runs > 0:
        yield min(CHUNK, runs)
        runs -= CHUNK
