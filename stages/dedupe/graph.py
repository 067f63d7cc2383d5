"""Connected components over an edge list, in numpy: the stage's clusters and the label rule's groups of
copies of one text (scipy.sparse.csgraph does the same, but its import cost more start-up than the work)."""
from __future__ import annotations

import numpy as np


def connected_components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per row, the smallest row of its connected component over the edges (left, right).

    Shiloach–Vishkin style over numpy arrays: every tree's root is hooked to the smallest root an edge
    reaches, then paths are shortened until every row points at its root. Each round every tree of an
    unfinished component merges with another, so there are O(log n) rounds. (scipy.sparse.csgraph does
    the same, but importing it took ~0.4 s of every run's start-up, more than the computation.)
    """
    parent = np.arange(n, dtype=np.int64)
    while True:
        root_left, root_right = parent[left], parent[right]
        differ = root_left != root_right
        if not differ.any():
            return parent
        low = np.minimum(root_left[differ], root_right[differ])
        np.minimum.at(parent, root_left[differ], low)
        np.minimum.at(parent, root_right[differ], low)
        while True:  # shortcut: every row to its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
