"""Virtual nodes: spike sources whose times come from inputs, one SpikePlayer each.

Every virtual node is a gid-registered cell (not a PatternStim) so that spikes cross
ranks through ParallelContext like any other and checkpoints can save its state.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from sonatarun.engines.base import CellBatch, ConnectionBatch, RunSettings
from sonatarun.engines.neuron.cells.base import CellBuilder, NrnCell
from sonatarun.errors import EngineError


class VirtualCell(NrnCell):
    def __init__(self, gid: int, node_id: int, population: str) -> None:
        from neuron import h

        self.gid, self.node_id, self.population = gid, node_id, population
        self.hobj = h.SpikePlayer()
        self.times = h.Vector()
        self.hobj.play(self.times)

    def spike_source(self, threshold: float) -> Any:
        from neuron import h

        return h.NetCon(self.hobj, None)

    def play(self, times: np.ndarray) -> None:
        """Append spike times (sorted); called before initialisation."""
        merged = np.concatenate([self.times.as_numpy(), np.asarray(times, dtype=np.float64)])
        self.times.from_python(np.sort(merged))
        self.hobj.play(self.times)

    def reattach(self) -> None:
        """Point the player at its Vector again (after a state restore)."""
        self.hobj.play(self.times)

    def connect(self, batch: ConnectionBatch, rows: np.ndarray, pc: Any) -> list[Any]:
        raise EngineError(f"edge population '{batch.edge_population}' targets virtual node "
                          f"{self.population}:{self.node_id}; virtual nodes cannot receive synapses",
                          fix="remove those edges or give the population a real model_type")


class VirtualBuilder(CellBuilder):
    def build(self, batch: CellBatch, settings: RunSettings) -> list[NrnCell]:
        return [VirtualCell(int(g), int(n), batch.population) for g, n in zip(batch.gids, batch.node_ids)]
