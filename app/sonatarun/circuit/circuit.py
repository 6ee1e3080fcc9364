"""The whole circuit a config names: node populations, edge populations and global ids."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sonatarun.circuit.edges import EdgePopulation
from sonatarun.circuit.nodes import NodePopulation
from sonatarun.config.model import EdgeFiles, NodeFiles
from sonatarun.errors import CircuitError


@dataclass
class Circuit:
    nodes: dict[str, NodePopulation]
    edges: list[EdgePopulation]
    offsets: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, node_files: list[NodeFiles], edge_files: list[EdgeFiles]) -> "Circuit":
        nodes: dict[str, NodePopulation] = {}
        for nf in node_files:
            for pop in NodePopulation.open_all(nf.nodes_file, nf.node_types_file):
                if pop.name in nodes:
                    raise CircuitError(f"node population '{pop.name}' is defined twice (also in "
                                       f"{nodes[pop.name].h5_path})", file=nf.nodes_file)
                nodes[pop.name] = pop
        edges: list[EdgePopulation] = []
        for ef in edge_files:
            for epop in EdgePopulation.open_all(ef.edges_file, ef.edge_types_file):
                for role, pname in (("source", epop.source_population), ("target", epop.target_population)):
                    if pname not in nodes:
                        raise CircuitError(
                            f"edge population '{epop.name}' has {role} node population '{pname}' that no nodes "
                            f"file defines", file=ef.edges_file, key=f"/edges/{epop.name}/{role}_node_id",
                            fix=f"add the nodes file of '{pname}' to networks.nodes")
                edges.append(epop)
        offsets, total = {}, 0
        for name, pop in nodes.items():
            offsets[name] = total
            total += pop.size
        return cls(nodes, edges, offsets)

    @property
    def n_cells(self) -> int:
        return sum(p.size for p in self.nodes.values())

    def gids(self, population: str, node_ids: np.ndarray) -> np.ndarray:
        return np.asarray(node_ids, dtype=np.int64) + self.offsets[population]

    def population_of_gids(self, gids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(population index into `population_names`, node id) for each gid, vectorised."""
        names = self.population_names
        starts = np.array([self.offsets[n] for n in names], dtype=np.int64)
        pop_idx = np.searchsorted(starts, gids, side="right") - 1
        return pop_idx, np.asarray(gids, dtype=np.int64) - starts[pop_idx]

    @property
    def population_names(self) -> list[str]:
        return list(self.nodes)

    def has_cells(self, population: str) -> bool:
        """True when a population has nodes that are not virtual (so it can spike on its own)."""
        cols = self.nodes[population].columns
        return "model_type" not in cols or bool((cols["model_type"] != "virtual").any())

    def describe_files(self) -> list[Path]:
        return sorted({p.h5_path for p in self.nodes.values()} | {e.h5_path for e in self.edges})
