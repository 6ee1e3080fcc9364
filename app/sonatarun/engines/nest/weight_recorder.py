"""BMTK PointNet's `weight_recorder` report: weights of plastic synapses as they change.

BMTK (modules/weight_recorder.py) creates a NEST `weight_recorder`, makes a copy of the
synapse model (`nest_model`) named `model_template` that feeds it, and edge types use that
name as their model_template. After the run it writes one space-separated CSV:
``source_node_id source_population target_node_id target_population time_ms weights
receptors ports``. Here the rows are appended at every block end instead.

The report's ProbeSpec (kind "weight_recorder") carries in `options`: `nest_model`,
`model_template`, `file` (absolute path) and optionally `populations`
([name, first gid, size], ...) to turn gids into population + node id.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.engines.base import Probe, ProbeSpec
from sonatarun.engines.nest.build import GidMap
from sonatarun.errors import EngineError

COLUMNS = ("source_node_id", "source_population", "target_node_id", "target_population", "time_ms", "weights",
           "receptors", "ports")


def recorded_template(spec: ProbeSpec) -> str:
    return str(spec.options.get("model_template") or "")


class WeightRecorderProbe(Probe):
    """A NEST weight_recorder behind a copy of a synapse model; rows go to a CSV per block."""

    def __init__(self, nest, spec: ProbeSpec, gid_map: GidMap, tstop: float) -> None:
        self.spec = spec
        self._tstop = tstop
        opts = spec.options
        self.nest_model = str(opts.get("nest_model") or "")
        self.template = recorded_template(spec)
        if not self.nest_model or not self.template:
            raise EngineError("a weight_recorder report needs nest_model and model_template",
                              key=f"reports.{spec.name}",
                              fix='e.g. "nest_model": "stdp_synapse", "model_template": "stdp_synapse_recorded"')
        if self.nest_model not in nest.synapse_models:
            raise EngineError(f"NEST has no synapse model '{self.nest_model}'", key=f"reports.{spec.name}.nest_model",
                              fix="use a plastic NEST synapse model, e.g. stdp_synapse")
        if self.template in nest.synapse_models:
            raise EngineError(f"model_template '{self.template}' already names a NEST synapse model",
                              key=f"reports.{spec.name}.model_template",
                              fix="pick a new name (e.g. <nest_model>_recorded) and use it in the edge types")
        if not opts.get("file"):
            raise EngineError("a weight_recorder report needs an output file", key=f"reports.{spec.name}.file_name")
        self.path = Path(opts["file"])
        self._nest = nest
        self._gid_map = gid_map
        pops = opts.get("populations") or []
        self._pop_names = [str(p[0]) for p in pops]
        self._pop_starts = np.array([int(p[1]) for p in pops], dtype=np.int64)
        self.device = nest.Create("weight_recorder", params={"record_to": "memory"})
        nest.CopyModel(self.nest_model, self.template, {"weight_recorder": self.device})
        self.node_ids = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.element_ids = np.zeros(0, dtype=np.int64)
        self.element_pos = np.zeros(0)
        self.units = ""
        self.dt = 0.0
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w") as fh:
            fh.write(" ".join(COLUMNS) + "\n")

    def _where(self, gids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._pop_starts) == 0:
            return gids, np.full(len(gids), "", dtype=object)
        order = np.argsort(self._pop_starts)
        starts = self._pop_starts[order]
        idx = np.searchsorted(starts, gids, side="right") - 1
        return gids - starts[idx], np.asarray(self._pop_names, dtype=object)[order][idx]

    def drain(self) -> dict[str, np.ndarray]:
        ev: dict[str, Any] = self.device.get("events")
        senders = np.asarray(ev["senders"], dtype=np.int64)
        if len(senders) == 0:
            return {}
        self.device.n_events = 0
        src, src_pop = self._where(self._gid_map.gids(senders))
        tgt, tgt_pop = self._where(self._gid_map.gids(np.asarray(ev["targets"], dtype=np.int64)))
        times = np.round(np.asarray(ev["times"], dtype=np.float64), 3)
        keep = times <= self._tstop + 1e-9  # the engine's last flush slice runs past tstop
        n = len(senders)
        import pandas as pd  # only for this report's CSV: a NEST run without it need not import pandas

        table = pd.DataFrame({
            "source_node_id": src, "source_population": src_pop, "target_node_id": tgt,
            "target_population": tgt_pop, "time_ms": times,
            "weights": np.asarray(ev["weights"], dtype=np.float64),
            "receptors": np.asarray(ev.get("receptors", np.zeros(n)), dtype=np.int64),
            "ports": np.asarray(ev.get("ports", np.zeros(n)), dtype=np.int64)})
        table = table[keep]
        table.to_csv(self.path, sep=" ", header=False, index=False, mode="a")
        self.rows += len(table)
        return {}
