"""The contract between the simulation layer and an engine.

Engines never read configs or SONATA files: the simulation layer resolves the
config and the circuit into the plain, rank-local plan below (numpy arrays,
absolute paths, dicts of parameters), and an engine turns that plan into
simulator objects. That keeps each engine a single module tree that can be
tested on its own and swapped without touching the rest.

All arrays describe only what this rank owns: cells whose gid this rank
hosts, and edges whose *target* this rank hosts.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from sonatarun.mpi import Comm


@dataclass
class RunSettings:
    """Everything an engine needs to know about time, conditions and where components live."""

    tstart: float = 0.0
    tstop: float = 1000.0
    dt: float = 0.025
    spike_threshold: float = -15.0
    dL: float = 20.0
    celsius: float = 34.0
    v_init: float = -80.0
    nsteps_block: int = 5000
    threads: int = 1
    seed: int = 0
    # absolute component directories from the config's `components` section
    components: dict[str, Path] = field(default_factory=dict)
    quiet: bool = False
    # engine-specific run keys the config passes through (e.g. NEST's precise_times)
    engine_options: dict[str, Any] = field(default_factory=dict)

    @property
    def block_ms(self) -> float:
        return self.nsteps_block * self.dt


@dataclass
class CellBatch:
    """Cells of one population and node type: one model, rank-local node ids.

    `attributes` holds every per-node column (h5 group columns joined with the
    node-types CSV; h5 wins) as arrays indexed like `node_ids`. `dynamics` is the type-level
    parameter dict (the node type's dynamics_params JSON, already loaded);
    `node_dynamics` holds per-node parameter columns from the h5 `dynamics_params`
    subgroup, which override `dynamics` for that node.
    """

    population: str
    node_type_id: int
    model_type: str
    model_template: str | None
    node_ids: np.ndarray
    gids: np.ndarray
    attributes: dict[str, np.ndarray]
    dynamics: dict[str, Any] = field(default_factory=dict)
    node_dynamics: dict[str, np.ndarray] = field(default_factory=dict)
    model_processing: str | None = None
    morphology_dir: Path | None = None

    def __len__(self) -> int:
        return len(self.node_ids)


@dataclass
class ConnectionBatch:
    """Edges of one edge population and edge type whose targets this rank owns.

    `weights` is syn_weight after any weight function, per edge (not yet
    multiplied by nsyns: engines apply BMTK's rule for their cell kind). `columns`
    holds the remaining per-edge h5 columns (afferent_section_id, sec_x, ...);
    `type_attrs` the edge-types CSV row (target_sections, distance_range, ...).
    """

    edge_population: str
    source_population: str
    target_population: str
    edge_type_id: int
    model_template: str | None
    dynamics: dict[str, Any]
    source_gids: np.ndarray
    target_gids: np.ndarray
    source_node_ids: np.ndarray
    target_node_ids: np.ndarray
    weights: np.ndarray
    delays: np.ndarray
    nsyns: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    type_attrs: dict[str, Any] = field(default_factory=dict)
    edge_ids: np.ndarray | None = None
    # BMTK: edges that carry section ids, or no nsyns column, are "preselected": one synapse
    # each and syn_weight used as is; otherwise nsyns synapses placed by rule and, on
    # point-process targets, weight x sign x nsyns.
    preselected: bool = True

    def __len__(self) -> int:
        return len(self.target_gids)


@dataclass
class EdgeChunk:
    """Edges of one population read only when the engine calls :meth:`load`, so an engine that
    streams edges (``Engine.streams_edges``) reads and prepares the next chunk while it connects
    this one, instead of the plan reading every edge before the first connect.

    Contract the simulation layer keeps: no (source, target) pair of this chunk occurs in any
    other chunk or batch of the plan (a target-sorted population is cut where the target
    changes, and no other edge population joins the same two node populations), so an engine
    may order each chunk's edges on its own. ``heads``: one edge-less batch per edge type of the
    population with its type-level fields (model_template, dynamics), for checks made before
    anything is read. ``load`` runs on whichever thread calls it and raises the errors the
    whole read would (CircuitError, ConfigError). ``whole`` (shared by the population's chunks)
    reads the population's batches as the plan makes them without streaming, for an engine that
    needs them in that form (e.g. NEST connections whose order a report follows).
    """

    edge_population: str
    source_population: str
    target_population: str
    n_edges: int
    heads: list[ConnectionBatch]
    load: Callable[[], list[ConnectionBatch]] = field(repr=False)
    whole: Callable[[], list[ConnectionBatch]] = field(repr=False)

    def __len__(self) -> int:
        return self.n_edges


@dataclass
class SpikeTrains:
    """Spike times to play from virtual cells (rank-local gids, times in ms, sorted per gid)."""

    name: str
    gids: np.ndarray
    times: list[np.ndarray]


@dataclass
class CurrentClamp:
    """Square current pulses (nA) into the soma (or a given section) of each gid."""

    name: str
    gids: np.ndarray
    amps: list[float]
    delays: list[float]
    durations: list[float]
    section: str = "soma"
    section_x: float = 0.5


@dataclass
class VoltageClamp:
    """SEClamp-style voltage steps (mV) into the soma of each gid."""

    name: str
    gids: np.ndarray
    amps: list[float]
    durations: list[float]
    rs: float = 0.01
    section: str = "soma"
    section_x: float = 0.5


@dataclass
class ProbeSpec:
    """A report request, engine-neutral. `kind`: membrane | synapse | multimeter."""

    name: str
    kind: str
    variables: list[str]
    population: str
    node_ids: np.ndarray
    gids: np.ndarray
    sections: str | list[str] = "soma"
    dt: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Probe(ABC):
    """A live recorder an engine returns for a ProbeSpec.

    The mapping describes columns in the order `drain()` returns them: for each
    local cell (`node_ids`), `counts[i]` consecutive columns with section
    indices `element_ids` and positions `element_pos`.
    """

    spec: ProbeSpec
    node_ids: np.ndarray
    counts: np.ndarray
    element_ids: np.ndarray
    element_pos: np.ndarray
    units: str
    dt: float

    @abstractmethod
    def drain(self) -> dict[str, np.ndarray]:
        """Return {variable: array[n_new_times, n_local_columns]} recorded since the last drain."""


class Engine(ABC):
    """A simulator backend. One instance per process; built once, advanced in blocks."""

    name: ClassVar[str]
    # False: the engine cannot save its state; the simulation layer then resumes by replay
    supports_checkpoints: ClassVar[bool] = True
    # True: the simulator places cells on ranks itself (NEST's round-robin over virtual
    # processes), so every rank is given the whole network and the engine keeps its share
    places_cells: ClassVar[bool] = False
    # True: build_connections also takes EdgeChunks (read on demand) among its batches
    streams_edges: ClassVar[bool] = False

    def __init__(self, settings: RunSettings, comm: Comm, log: logging.Logger) -> None:
        self.settings = settings
        self.comm = comm
        self.log = log
        # counts an engine wants in the run record (sonatarun.json, rank 0's), e.g. how many
        # edges NEST connected in cache order
        self.stats: dict[str, int] = {}

    @classmethod
    def edge_targets_here(cls, cells: list[CellBatch], rank: int, size: int, threads: int):
        """For engines that place cells themselves (``places_cells``): a function telling, for
        target gids, which ones this rank will hold, so it reads only the edges onto them; None
        reads every edge."""
        return None

    # -- model ---------------------------------------------------------------
    @abstractmethod
    def build_cells(self, batches: list[CellBatch]) -> None:
        """Instantiate rank-local cells and register their gids."""

    @abstractmethod
    def build_connections(self, batches: list[ConnectionBatch]) -> None:
        """Create rank-local synapses/connections (targets on this rank); engines that declare
        ``streams_edges`` get EdgeChunks among the batches too."""

    @abstractmethod
    def add_stimulus(self, stimulus: Any) -> None:
        """Apply one stimulus dataclass (SpikeTrains, CurrentClamp, ...). Unknown kinds raise EngineError."""

    def add_probe(self, spec: ProbeSpec) -> Probe:
        from sonatarun.errors import EngineError

        raise EngineError(f"the {self.name} engine does not support '{spec.kind}' reports",
                          key=f"reports.{spec.name}")

    # -- time ----------------------------------------------------------------
    @abstractmethod
    def prepare(self) -> None:
        """Initialise state at tstart (after everything is built)."""

    @abstractmethod
    def advance(self, t_stop: float) -> None:
        """Integrate until `t_stop` (a block end) with no Python in the loop."""

    @abstractmethod
    def drain_spikes(self) -> tuple[np.ndarray, np.ndarray]:
        """(gids, times) of spikes by rank-local cells since the last drain, then forget them."""

    @property
    @abstractmethod
    def time(self) -> float:
        """Current simulation time (ms)."""

    # -- checkpoints ---------------------------------------------------------
    def save_state(self, directory: Path) -> dict[str, Any]:
        from sonatarun.errors import EngineError

        raise EngineError(f"the {self.name} engine cannot checkpoint")

    def restore_state(self, directory: Path, meta: dict[str, Any]) -> None:
        from sonatarun.errors import EngineError

        raise EngineError(f"the {self.name} engine cannot resume")

    def finish(self) -> None:
        """Release simulator resources."""
