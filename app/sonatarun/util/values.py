"""Table entries as the plan reads them: a value is missing when it is None or a float NaN
(CSV gaps, h5 columns a group lacks, pandas' NaN in DataFrames handed to users)."""
from __future__ import annotations

from typing import Any

import numpy as np


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def as_scalar(v: Any) -> Any:
    """A table entry as a Python scalar (numpy scalars unwrapped), None where missing."""
    if isinstance(v, np.generic):
        v = v.item()
    return None if is_missing(v) else v
