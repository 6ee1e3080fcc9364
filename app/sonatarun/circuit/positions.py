"""Soma positions and rotation angles of nodes, read with BMTK BioNet's rules.

BioNet (``bionet/sonata_adaptors.py``) decides per node group which columns it has:

* position: a ``positions`` or ``position`` column (an (n, 3) dataset) if present; else
  ``x`` with ``y`` and ``z`` -> (x, y, z); ``x`` with ``y`` only -> (x, y, 0); ``x`` alone
  (or with ``z`` but no ``y``) -> (x, 0, 0); no ``x`` -> (0, 0, 0);
* ``rotation_angle_xaxis`` / ``_yaxis`` / ``_zaxis`` (radians): 0 when the column is absent.

The circuit's node table joins every group of a population, so a column one group lacks
is NaN on that group's rows: the rules above are applied per row from which values are
present, which is the per-group decision BMTK makes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sonatarun.errors import CircuitError

ROTATION_COLUMNS = ("rotation_angle_xaxis", "rotation_angle_yaxis", "rotation_angle_zaxis")


def _present(table: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64 with NaN -> 0, mask of rows that have the column)."""
    n = len(table)
    if column not in table.columns:
        return np.zeros(n), np.zeros(n, bool)
    try:
        values = pd.to_numeric(table[column], errors="raise").to_numpy(np.float64)
    except (TypeError, ValueError) as exc:
        raise CircuitError(f"node column '{column}' is not numeric ({exc})", key=column,
                           fix="store positions and rotation angles as numbers") from None
    has = ~np.isnan(values)
    return np.where(has, values, 0.0), has


def positions(table: pd.DataFrame) -> np.ndarray:
    """(n, 3) soma positions in um of the table's rows (BMTK's column rules, see the module doc)."""
    for col in ("positions", "position"):
        if col in table.columns:
            vals = table[col].to_numpy()
            if len(vals) and all(np.ndim(v) == 1 and len(v) == 3 for v in vals):
                return np.asarray(np.stack(vals), dtype=np.float64)
            raise CircuitError(f"node column '{col}' holds no 3-vectors (an (n, 3) '{col}' dataset is not "
                               f"read by sonatarun)", key=col, fix="store positions as x, y and z columns")
    x, has_x = _present(table, "x")
    y, has_y = _present(table, "y")
    z, has_z = _present(table, "z")
    has_y &= has_x
    has_z &= has_y
    return np.stack([np.where(has_x, x, 0.0), np.where(has_y, y, 0.0), np.where(has_z, z, 0.0)], axis=1)


def rotation_angles(table: pd.DataFrame) -> np.ndarray:
    """(n, 3) rotation angles (radians) about x, y and z; 0 where a column is absent."""
    return np.stack([_present(table, c)[0] for c in ROTATION_COLUMNS], axis=1)
