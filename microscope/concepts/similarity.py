"""How a layer's units go together: each unit's most correlated units and families of units.

Families are average-linkage clusters of the distance 1 - r (SciPy's hierarchical clustering), cut at
CUT: two groups join while the mean correlation between their members is at least 1 - CUT. Average
linkage, not single, so a family is not a chain of pairs each barely alike.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from microscope.store import UnitSimilarity

NEIGHBOURS = 8  # most correlated units kept per unit
CUT = 0.7  # families: mean correlation between joined groups at least 0.3


def similar_units(correlation: np.ndarray, positions: int) -> UnitSimilarity:
    units = correlation.shape[0]
    known = np.nan_to_num(correlation, nan=0.0)  # a constant unit correlates with nothing
    others = known - 3 * np.eye(units)  # never one's own neighbour
    n = min(NEIGHBOURS, units - 1)
    neighbours = np.argsort(-others, axis=1, kind="stable")[:, :n]
    neighbour_r = np.take_along_axis(correlation, neighbours, 1)
    empty = np.isnan(neighbour_r)
    neighbours[empty] = -1
    return UnitSimilarity(correlation=correlation.astype(np.float32), neighbours=neighbours.astype(np.int32),
                          neighbour_r=neighbour_r.astype(np.float32), family=families(known).astype(np.int32),
                          positions=np.array(positions, dtype=np.int64), cut=np.array(CUT))


def families(correlation: np.ndarray) -> np.ndarray:
    """(C,) each unit's family, numbered in the order of their lowest unit; -1 for a unit alone."""
    units = correlation.shape[0]
    if units < 2:
        return np.full(units, -1)
    distance = np.clip(1 - correlation, 0, 2)
    np.fill_diagonal(distance, 0)
    cluster = fcluster(linkage(squareform((distance + distance.T) / 2, checks=False), method="average"),
                       t=CUT, criterion="distance")
    sizes = np.bincount(cluster)
    found = np.full(units, -1)
    number = {}
    for unit, label in enumerate(cluster):
        if sizes[label] > 1:
            found[unit] = number.setdefault(label, len(number))
    return found
