"""Comparison-level rows for the linkage tests, written by level name."""

from __future__ import annotations

import numpy as np

from joinedup.link.compare import COMPARISON_NAMES, COMPARISONS, level_code


def pairs_at(count: int = 1, **levels: str) -> np.ndarray:
    """count pairs at the given levels, 'missing' elsewhere."""
    row = np.zeros((1, len(COMPARISONS)), dtype=np.int8)
    for name, level in levels.items():
        row[0, COMPARISON_NAMES.index(name)] = level_code(name, level)
    return np.repeat(row, count, axis=0)
