"""Config -> ProbeSpec for BMTK's extracellular potential report (``"module": "extracellular"``).

Keys, as BMTK BioNet reads them (``bionet/modules/ecp.py``):

* ``electrode_positions`` (required): a space-separated CSV with columns ``x_pos y_pos z_pos``
  (um), one row per electrode (other columns, e.g. ``channel``, are ignored; the output
  numbers the rows 0..n-1 as BMTK does). Comma- or tab-separated files are read too.
* ``file_name`` (default ``<report name>.h5``, relative to the output directory);
* ``cells`` (a node set; default: every biophysical cell; only biophysical cells contribute);
* ``minimum_distance`` (um, or ``"auto"`` for each segment's radius; default none);
* ``contributions_dir``: also write each cell's own potentials to ``<dir>/<gid>.h5``;
* ``variable_name`` is accepted and ignored (the ECP is computed from membrane currents),
  as is ``electrode_channels`` (BMTK ignores it too).

Refused with a clear error: ``file_name_nwb`` (NWB output), ``cell_bounds``, and ``dt`` /
``start_time`` / ``end_time`` (BMTK's ECP has none: every time step of the run is written).

Positions and rotations come from the node tables (``circuit.positions``), so the engine
receives plain numbers: the electrodes, and per local cell its soma position and angles.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonatarun.circuit.positions import positions, rotation_angles
from sonatarun.engines.base import ProbeSpec
from sonatarun.errors import ConfigError

_COLUMNS = ["x_pos", "y_pos", "z_pos"]
_REFUSED = {
    "file_name_nwb": "NWB output of the ECP is not supported; convert the HDF5 file afterwards",
    "cell_bounds": "use 'cells' with a node set instead of cell_bounds",
    "dt": "an extracellular report is written at every time step of the run (as in BMTK): remove 'dt'",
    "start_time": "an extracellular report covers the whole run (as in BMTK): remove 'start_time'",
    "end_time": "an extracellular report covers the whole run (as in BMTK): remove 'end_time'",
}


def read_electrodes(path: Path, *, file: Any, key: str) -> np.ndarray:
    """(n, 3) electrode positions from BMTK's electrode CSV."""
    if not path.exists():
        raise ConfigError(f"electrode positions file {path} not found", file=file, key=key,
                          fix="point electrode_positions at a CSV with columns x_pos y_pos z_pos")
    frame = None
    for sep in (" ", r"\s+", ","):
        try:
            candidate = pd.read_csv(path, sep=sep, engine="python")
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if set(_COLUMNS) <= set(candidate.columns):
            frame = candidate
            break
    if frame is None:
        raise ConfigError(f"electrode positions file {path} has no columns {' '.join(_COLUMNS)}", file=file,
                          key=key, fix="write a header line 'x_pos y_pos z_pos' (space separated, as BMTK reads it)")
    try:
        xyz = frame[_COLUMNS].to_numpy(np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"electrode positions in {path} are not numbers ({exc})", file=file, key=key) from None
    if len(xyz) == 0 or not np.all(np.isfinite(xyz)):
        raise ConfigError(f"electrode positions file {path} has no electrodes or non-finite coordinates",
                          file=file, key=key, fix="one row per electrode with finite x_pos y_pos z_pos")
    return xyz


def _minimum_distance(value: Any) -> float | str | None:
    """BMTK: 'auto', or max(float(value), 0), or 0 (off) when it is not a number."""
    if not value or value == "auto":
        return value or None
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0


def _out_path(value: Any, default: str, ctx) -> Path:
    p = Path(value or default)
    return p if p.is_absolute() else (ctx.output_dir or ctx.config.output.output_dir) / p


def extracellular(name: str, cfg: dict[str, Any], ctx) -> list[ProbeSpec]:
    file = ctx.config.source_of("reports")
    key = f"reports.{name}"
    for bad, fix in _REFUSED.items():
        if cfg.get(bad) is not None:
            raise ConfigError(f"'{bad}' is not supported for extracellular reports", file=file,
                              key=f"{key}.{bad}", fix=fix)
    if not cfg.get("electrode_positions"):
        raise ConfigError("an extracellular report needs 'electrode_positions'", file=file,
                          key=f"{key}.electrode_positions",
                          fix="name a CSV with columns x_pos y_pos z_pos (one row per electrode)")
    electrodes = read_electrodes(ctx.resolve_path(str(cfg["electrode_positions"]), "reports",
                                                  f"{key}.electrode_positions"),
                                 file=file, key=f"{key}.electrode_positions")
    cells = cfg.get("cells", "all")
    selection = ctx.node_set(cells, key=f"{key}.cells") if cells != "all" else ctx.all_nodes(non_virtual=True)
    gids, node_ids, pos, rot = [], [], [], []
    for pop, ids in selection.items():
        table = ctx.circuit.nodes[pop].table
        rows = table.loc[np.asarray(ids, dtype=np.int64)]
        if "model_type" in rows.columns:
            rows = rows[(rows["model_type"] == "biophysical").to_numpy()]
        ids = rows["node_id"].to_numpy(np.int64)
        g = ctx.circuit.gids(pop, ids)
        mine = ctx.owned(g)
        rows = rows[mine]
        gids.append(g[mine])
        node_ids.append(ids[mine])
        pos.append(positions(rows))
        rot.append(rotation_angles(rows))
    gids_a = np.concatenate(gids) if gids else np.zeros(0, np.int64)
    order = np.argsort(gids_a, kind="stable")
    contributions = cfg.get("contributions_dir")
    options = {
        "electrodes": electrodes,
        "positions": (np.concatenate(pos) if pos else np.zeros((0, 3)))[order],
        "rotations": (np.concatenate(rot) if rot else np.zeros((0, 3)))[order],
        "minimum_distance": _minimum_distance(cfg.get("minimum_distance")),
        "file": str(_out_path(cfg.get("file_name"), _default_file(name), ctx)),
        "contributions": str(_out_path(contributions, "", ctx)) if contributions else None,
    }
    return [ProbeSpec(name=name, kind="extracellular", variables=["v"], population="",
                      node_ids=(np.concatenate(node_ids) if node_ids else np.zeros(0, np.int64))[order],
                      gids=gids_a[order], sections="all", options=options)]


def _default_file(name: str) -> str:
    """BMTK's ECPReport default: the report name, with .h5 unless it already ends in .h5/.hdf/.hdf5."""
    return name if name.endswith((".h5", ".hdf", ".hdf5")) else f"{name}.h5"


def writers(spec: ProbeSpec, probe, comm) -> dict[str, Any]:
    """The ECP file (and the per-cell files) for one probe, keyed like the probe's ``drain()``."""
    from sonatarun.io.ecp_writer import EcpContributionsWriter, EcpReportWriter

    n = int(np.asarray(spec.options["electrodes"]).reshape(-1, 3).shape[0])
    out: dict[str, Any] = {"v": EcpReportWriter(spec.options["file"], comm, n, probe.tstart, probe.tstop, probe.dt)}
    if spec.options.get("contributions"):
        out["contributions"] = EcpContributionsWriter(spec.options["contributions"], comm, probe.gids, n,
                                                      probe.tstart, probe.tstop, probe.dt)
    return out
