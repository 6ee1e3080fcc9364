"""What input and report builders may ask of the simulation: node sets, ownership, paths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonatarun.circuit import Circuit, resolve_node_set
from sonatarun.config import SimulationConfig
from sonatarun.errors import ConfigError


@dataclass
class BuildContext:
    config: SimulationConfig
    circuit: Circuit
    rank: int
    size: int
    output_dir: Path | None = None  # where the run writes (reports that write their own files need it)
    whole: bool = False  # every rank plans every cell: the engine places them on ranks itself (NEST)

    def owned(self, gids: np.ndarray) -> np.ndarray:
        """Mask of the gids this rank hosts (round-robin by gid, as BMTK and neurodamus do)."""
        gids = np.asarray(gids, dtype=np.int64)
        if self.whole or self.size == 1:
            return np.ones(gids.shape, dtype=bool)
        return (gids % self.size) == self.rank

    def node_set(self, spec: Any, *, key: str) -> dict[str, np.ndarray]:
        if spec is None:
            raise ConfigError("missing node set", file=self.config.source_of(key.split(".")[0]), key=key,
                              fix="name a node set or a population")
        return resolve_node_set(spec, self.circuit, self.config.node_sets,
                                file=self.config.source_of(key.split(".")[0]), key=key)

    def all_nodes(self, *, non_virtual: bool = False) -> dict[str, np.ndarray]:
        out = {}
        for name, pop in self.circuit.nodes.items():
            ids = np.arange(pop.size, dtype=np.int64)
            if non_virtual and "model_type" in pop.columns:
                ids = ids[pop.columns["model_type"] != "virtual"]
            if len(ids):
                out[name] = ids
        return out

    def resolve_path(self, value: str, section: str, key: str) -> Path:
        p = Path(value)
        if p.is_absolute():
            return p
        cwd = Path.cwd() / p
        if cwd.exists():
            return cwd
        alt = self.config.source_of(section).parent / p
        return alt if alt.exists() else cwd
