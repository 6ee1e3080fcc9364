"""Point-process cells (`nrn:IntFire1`, any NEURON ARTIFICIAL_CELL), as BMTK BioNet builds them."""
from __future__ import annotations

from typing import Any

import numpy as np

from sonatarun.engines.base import CellBatch, ConnectionBatch, RunSettings
from sonatarun.engines.neuron.cells.base import CellBuilder, NrnCell
from sonatarun.errors import EngineError

# BMTK gives IntFire1's time constants in seconds and converts them (cell_models.IntFire1).
_SECONDS_PARAMS = {"IntFire1": ("tau", "refrac")}


class PointProcessCell(NrnCell):
    def __init__(self, gid: int, node_id: int, population: str, hobj: Any) -> None:
        self.gid, self.node_id, self.population, self.hobj = gid, node_id, population, hobj

    def spike_source(self, threshold: float) -> Any:
        from neuron import h

        return h.NetCon(self.hobj, None)

    def connect(self, batch: ConnectionBatch, rows: np.ndarray, pc: Any) -> list[Any]:
        weights = batch.weights[rows]
        if not batch.preselected:
            weights = weights * float(batch.dynamics.get("sign", 1.0)) * batch.nsyns[rows]
        out = []
        for src, w, d in zip(batch.source_gids[rows].tolist(), weights.tolist(), batch.delays[rows].tolist()):
            nc = pc.gid_connect(src, self.hobj)
            nc.weight[0] = w
            nc.delay = d
            out.append(nc)
        return out


class PointProcessBuilder(CellBuilder):
    def build(self, batch: CellBatch, settings: RunSettings) -> list[NrnCell]:
        from neuron import h

        template = batch.model_template or ""
        kind, _, name = template.partition(":")
        if kind != "nrn" or not name:
            raise EngineError(f"model_template '{template}' of population '{batch.population}' (node type "
                              f"{batch.node_type_id}) is not a NEURON point process",
                              key="model_template", fix="use nrn:<ArtificialCell>, e.g. nrn:IntFire1")
        if not hasattr(h, name):
            raise EngineError(f"NEURON has no point process '{name}' (population '{batch.population}')",
                              key="model_template",
                              fix="load the mechanism that defines it via components.mechanisms_dir")
        cls = getattr(h, name)
        params = {k: v for k, v in batch.dynamics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        per_node = batch.node_dynamics
        scale = {p: 1000.0 for p in _SECONDS_PARAMS.get(name, ())}
        cells: list[NrnCell] = []
        for i, (gid, nid) in enumerate(zip(batch.gids.tolist(), batch.node_ids.tolist())):
            hobj = cls()
            values = dict(params)
            for key, col in per_node.items():
                if not np.isnan(col[i]):
                    values[key] = float(col[i])
            for key, val in values.items():
                if not hasattr(hobj, key):
                    raise EngineError(f"'{name}' has no parameter '{key}' (population '{batch.population}', "
                                      f"node type {batch.node_type_id})", key=f"dynamics_params.{key}",
                                      fix=f"remove it or use a parameter of {name}")
                setattr(hobj, key, val * scale.get(key, 1.0))
            cells.append(PointProcessCell(gid, nid, batch.population, hobj))
        return cells
