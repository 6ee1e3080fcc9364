"""Node- and edge-types CSV files (space separated, as SONATA and BMTK write them).

Read with the standard library rather than pandas: these tables hold a handful of rows,
and importing pandas alone costs ~0.3 s, a quarter of a 10k-neuron NEST build. Values are
typed the way ``pandas.read_csv`` types them (BMTK reads these files with it): a column whose
values are all integers is int64 (float64 when some are missing), all numbers float64,
all True/False bool, anything else str with None where a value is missing.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.circuit.ids import small_unique
from sonatarun.errors import CircuitError
from sonatarun.util.values import as_scalar

_MISSING = frozenset({"NONE", "NULL", "None", "null", "NaN", ""})
_TRUE, _FALSE = frozenset({"True", "TRUE", "true"}), frozenset({"False", "FALSE", "false"})


@dataclass
class TypesTable:
    """One types CSV: the type ids and each column, one entry per row (header order kept)."""

    path: Path
    id_column: str
    ids: np.ndarray
    columns: dict[str, np.ndarray]
    _rows: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._rows = {int(t): k for k, t in enumerate(self.ids.tolist())}

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __contains__(self, type_id: object) -> bool:
        try:
            return int(type_id) in self._rows  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    def row(self, type_id: int) -> dict[str, Any]:
        """Every column's value for one type (None where missing), as Python scalars."""
        k = self._rows[int(type_id)]
        return {c: as_scalar(v[k]) for c, v in self.columns.items()}

    def take(self, type_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Each column's values for an array of type ids (all present), without a Python loop."""
        order = np.argsort(self.ids, kind="stable")
        pos = order[np.searchsorted(self.ids, type_ids, sorter=order)]
        return {c: v[pos] for c, v in self.columns.items()}

    def missing(self, type_ids: np.ndarray) -> list[int]:
        """Type ids of `type_ids` the table does not define, sorted."""
        return [t for t in small_unique(np.asarray(type_ids)).tolist() if t not in self._rows]


def _typed(values: list[str]) -> np.ndarray:
    present = [v for v in values if v not in _MISSING]
    if present and all(v in _TRUE or v in _FALSE for v in present) and len(present) == len(values):
        return np.array([v in _TRUE for v in values], dtype=bool)
    try:
        ints = [int(v) for v in present]
        if len(present) == len(values):
            return np.array(ints, dtype=np.int64)
        return np.array([np.nan if v in _MISSING else float(int(v)) for v in values], dtype=np.float64)
    except ValueError:
        pass
    except OverflowError:
        pass
    try:
        return np.array([np.nan if v in _MISSING else float(v) for v in values], dtype=np.float64)
    except ValueError:
        return np.array([None if v in _MISSING else v for v in values], dtype=object)


def read_types_table(path: Path, id_column: str) -> TypesTable:
    """Read a types CSV keyed by `id_column` (node_type_id / edge_type_id)."""
    fix = "it must be a space-separated CSV with a header row"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            lines = [ln.rstrip(" \t\r\n") for ln in fh]
    except (OSError, UnicodeDecodeError) as exc:
        raise CircuitError(f"cannot read types table: {exc}", file=path, fix=fix) from exc
    # BMTK writes these with sep=' ' and double quotes around values holding spaces
    try:
        rows = list(csv.reader((ln for ln in lines if ln), delimiter=" ", quotechar='"', skipinitialspace=True))
    except csv.Error as exc:
        raise CircuitError(f"cannot parse types table: {exc}", file=path, fix=fix) from exc
    if not rows:
        raise CircuitError("the types table is empty", file=path, fix=fix)
    header = rows[0]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise CircuitError(f"column '{dup}' appears twice in the header", file=path, key=dup, fix=fix)
    if id_column not in header:
        raise CircuitError(f"no '{id_column}' column", file=path, key=id_column,
                           fix=f"the header must name {id_column}")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise CircuitError(f"line {line} has {len(row)} values for {len(header)} columns", file=path,
                               fix="quote values that hold spaces (\"a b\")")
    body = [row + [""] * (len(header) - len(row)) for row in rows[1:]]
    columns = {h: _typed([row[k] for row in body]) for k, h in enumerate(header)}
    ids = columns[id_column]
    if ids.dtype != np.int64:
        raise CircuitError(f"{id_column} must be integers", file=path, key=id_column,
                           fix=f"give every row an integer {id_column}")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise CircuitError(f"{id_column} {int(uniq[counts > 1][0])} appears twice", file=path, key=id_column)
    return TypesTable(Path(path), id_column, ids, columns)
