"""How inputs are ranked by their expanded weights (no torch: the site ranks outputs with it too)."""
from __future__ import annotations

import numpy as np


def ranked(sums: np.ndarray, t: int) -> np.ndarray:
    """The t largest sums, then the t smallest, each ordered from the extreme inward; ties to the lower index."""
    index = np.arange(sums.size)
    return np.concatenate([np.lexsort((index, -sums))[:t], np.lexsort((index, sums))[:t]])
