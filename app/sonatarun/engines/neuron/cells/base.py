"""What the NEURON engine needs from a cell, whatever its kind.

A cell builder (one module per `model_type`, registered in ``cells/__init__.py``)
turns a :class:`~sonatarun.engines.base.CellBatch` into :class:`NrnCell` objects.
The engine registers each cell's spike source with ``ParallelContext`` and
hands it the rows of a :class:`ConnectionBatch` that target it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from sonatarun.engines.base import CellBatch, ConnectionBatch, RunSettings


class NrnCell(ABC):
    gid: int
    node_id: int
    population: str

    @abstractmethod
    def spike_source(self, threshold: float) -> Any:
        """A NetCon with no target watching this cell's output, for ``pc.cell(gid, nc)``."""

    @abstractmethod
    def connect(self, batch: ConnectionBatch, rows: np.ndarray, pc: Any) -> list[Any]:
        """Create the synapses/NetCons for `batch` rows (all targeting this cell); return them
        so the engine keeps them alive."""

    def segment(self, section: str = "soma", x: float = 0.5) -> Any:
        """The NEURON segment for clamps and probes; artificial cells have none."""
        from sonatarun.errors import EngineError

        raise EngineError(f"cell {self.population}:{self.node_id} has no sections to attach to")


class CellBuilder(ABC):
    """Builds all cells of one batch; may cache per-batch work (a morphology loaded once)."""

    @abstractmethod
    def build(self, batch: CellBatch, settings: RunSettings) -> list[NrnCell]:
        ...
