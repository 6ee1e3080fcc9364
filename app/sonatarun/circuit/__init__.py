"""SONATA circuit reading: nodes, edges, node sets. Vectorised; no per-edge Python."""
from sonatarun.circuit.circuit import Circuit
from sonatarun.circuit.node_sets import resolve_node_set

__all__ = ["Circuit", "resolve_node_set"]
