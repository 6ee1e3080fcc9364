"""Node- and edge-types CSV files (space separated, as SONATA and BMTK write them)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sonatarun.errors import CircuitError

_MISSING = ["NONE", "NULL", "None", "null", "NaN"]


def read_types_table(path: Path, id_column: str) -> pd.DataFrame:
    """Read a types CSV indexed by `id_column` (node_type_id / edge_type_id)."""
    try:
        # BMTK reads these with sep=' ' and double quotes around values holding spaces
        table = pd.read_csv(path, sep=" ", na_values=_MISSING, keep_default_na=False, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CircuitError(f"cannot parse types table: {exc}", file=path,
                           fix="it must be a space-separated CSV with a header row") from exc
    if id_column not in table.columns:
        raise CircuitError(f"no '{id_column}' column", file=path, key=id_column,
                           fix=f"the header must name {id_column}")
    if table[id_column].duplicated().any():
        dup = table[id_column][table[id_column].duplicated()].iloc[0]
        raise CircuitError(f"{id_column} {dup} appears twice", file=path, key=id_column)
    return table.set_index(id_column, drop=False)
