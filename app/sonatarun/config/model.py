"""Typed view of a resolved SONATA simulation config.

`SimulationConfig.from_file` is the only place that interprets config keys; every
layer below receives these dataclasses. Unknown keys are warned about once (a
typo must not silently change a run); wrong types and missing required keys fail.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonatarun.config.loader import load_config, load_json
from sonatarun.errors import ConfigError

NUMBER = (int, float)

# key -> (accepted types, default). A default of REQUIRED means the key must be given.
REQUIRED = object()

RUN_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "tstart": (NUMBER, 0.0),
    "tstop": (NUMBER, None),
    "dt": (NUMBER, 0.1),
    "dL": (NUMBER, 20.0),
    "spike_threshold": (NUMBER, -15.0),
    "nsteps_block": (NUMBER, 5000),
    "block_size": (NUMBER, None),
    "checkpoint_interval": (NUMBER, None),
    "threads": (NUMBER, None),
    "local_num_threads": (NUMBER, None),
    "random_seed": (NUMBER, None),
    "rng_seed": (NUMBER, None),
    "optocell": ((str, list), None),
    # BMTK PointNet's run keys
    "n_thread": (NUMBER, None),
    "block_run": ((bool,), None),
    "print_time": ((bool,), None),
    "duration": (NUMBER, None),
    "overwrite_output_dir": ((bool,), None),
    "precise_times": ((bool,), None),
    "allow_offgrid_spikes": ((bool,), None),
    "coreneuron": ((bool,), None),  # NEURON engine: integrate with CoreNEURON (as `run --coreneuron`)
}
# run keys an engine interprets itself (passed through as RunSettings.engine_options)
ENGINE_RUN_KEYS = ("precise_times", "allow_offgrid_spikes", "coreneuron")
CONDITIONS_KEYS = {"celsius": (NUMBER, 34.0), "v_init": (NUMBER, -80.0)}
OUTPUT_KEYS = {
    "output_dir": ((str,), "output"),
    "log_file": ((str, bool), None),
    "spikes_file": ((str,), None),
    "spikes_file_csv": ((str,), None),
    "spikes_file_nwb": ((str,), None),
    "spikes_sort_order": ((str,), "none"),
    "sort_order": ((str,), None),
    "overwrite_output_dir": ((bool,), True),
    "log_to_console": ((bool,), True),
    "quiet_simulator": ((bool,), False),
    "log_level": ((str,), "INFO"),
    "log_format": ((str,), None),
}
TOP_KEYS = {"manifest", "network", "simulation", "target_simulator", "run", "conditions", "components",
            "networks", "node_sets", "node_sets_file", "inputs", "reports", "output", "config_path",
            "config_dir", "_sources", "mechanisms", "simulation_type", "connected_components",
            "node_set", "metadata", "beta_features", "target_simulator_version", "components_dir"}
SORT_ORDERS = {"none": "none", "": "none", "unsorted": "none", "time": "by_time", "by_time": "by_time",
               "id": "by_id", "gid": "by_id", "node_id": "by_id", "by_id": "by_id", "node_ids": "by_id"}


@dataclass
class RunConfig:
    tstart: float
    tstop: float
    dt: float
    dL: float
    spike_threshold: float
    nsteps_block: int
    checkpoint_interval: float | None
    threads: int | None
    seed: int
    engine_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputConfig:
    output_dir: Path
    # file names below are relative to output_dir unless absolute
    log_file: Path | None
    spikes_file: Path | None
    spikes_file_csv: Path | None
    spikes_sort_order: str
    overwrite_output_dir: bool
    log_to_console: bool
    quiet_simulator: bool
    log_level: str

    def in_dir(self, name: Path | None, output_dir: Path | None = None) -> Path | None:
        if name is None:
            return None
        return name if name.is_absolute() else (output_dir or self.output_dir) / name


@dataclass
class NodeFiles:
    nodes_file: Path
    node_types_file: Path
    populations: dict[str, Any] = field(default_factory=dict)


@dataclass
class EdgeFiles:
    edges_file: Path
    edge_types_file: Path
    populations: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimulationConfig:
    path: Path
    run: RunConfig
    celsius: float
    v_init: float
    output: OutputConfig
    components: dict[str, Path]
    nodes: list[NodeFiles]
    edges: list[EdgeFiles]
    node_sets: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    reports: dict[str, dict[str, Any]]
    target_simulator: str | None
    warnings: list[str]
    raw: dict[str, Any]

    def source_of(self, section: str) -> Path:
        """The file a top-level section came from (split configs), for error messages."""
        return Path(self.raw.get("_sources", {}).get(section, self.path))

    @classmethod
    def from_file(cls, path: str | Path) -> "SimulationConfig":
        return _Parser(load_config(path)).parse()


class _Parser:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.path = Path(conf["config_path"])
        self.warnings: list[str] = []

    def file_for(self, section: str) -> Path:
        return Path(self.conf.get("_sources", {}).get(section, self.path))

    def resolve(self, value: str, section: str, key: str, *, must_exist: bool = True) -> Path:
        """BMTK leaves relative paths relative to the working directory; we do too, and fall
        back to the directory of the config file that named the path when that is where it is."""
        p = Path(os.path.expanduser(value))
        if p.is_absolute():
            out = p
        else:
            cwd_path = Path.cwd() / p
            cfg_path = self.file_for(section).parent / p
            out = cwd_path if (cwd_path.exists() or not must_exist or not cfg_path.exists()) else cfg_path
        if must_exist and not out.exists():
            raise ConfigError(f"'{value}' does not exist", file=self.file_for(section), key=key,
                              fix="correct the path (relative paths are taken from the working directory, "
                                  "then from the config's directory)")
        return out

    def section(self, name: str, spec: dict[str, tuple[tuple[type, ...], Any]]) -> dict[str, Any]:
        raw = self.conf.get(name, {})
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"'{name}' must be a JSON object", file=self.file_for(name), key=name)
        out: dict[str, Any] = {}
        for key, (types, default) in spec.items():
            if key in raw:
                val = raw[key]
                ok = isinstance(val, types) and not (isinstance(val, bool) and bool not in types)
                if not ok and val is not None:
                    tname = " or ".join(sorted({"number" if t in NUMBER else t.__name__ for t in types}))
                    raise ConfigError(f"must be a {tname}, got {val!r}", file=self.file_for(name),
                                      key=f"{name}.{key}")
                out[key] = val
            elif default is REQUIRED:
                raise ConfigError("required key is missing", file=self.file_for(name), key=f"{name}.{key}",
                                  fix=f"add \"{key}\" to the \"{name}\" section")
            else:
                out[key] = default
        for key in raw:
            if key not in spec:
                self.warn(f"{self.file_for(name)}: unknown key '{name}.{key}' ignored")
        return out

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def parse(self) -> SimulationConfig:
        conf = self.conf
        for key in conf:
            if key not in TOP_KEYS:
                self.warn(f"{self.file_for(key)}: unknown key '{key}' ignored")
        run = self.section("run", RUN_KEYS)
        if run["tstop"] is None:
            run["tstop"] = run["duration"]  # PointNet's name for it
        if run["tstop"] is None:
            raise ConfigError("required key is missing", file=self.file_for("run"), key="run.tstop",
                              fix='add "tstop" (ms) to the "run" section')
        if run["tstop"] <= run["tstart"]:
            raise ConfigError("tstop must be greater than tstart", file=self.file_for("run"), key="run.tstop")
        if run["dt"] <= 0:
            raise ConfigError("dt must be positive", file=self.file_for("run"), key="run.dt")
        nsteps = int(run["nsteps_block"])
        if run.get("block_size") and "nsteps_block" not in (self.conf.get("run") or {}):
            nsteps = max(1, int(run["block_size"]))  # PointNet: block_size is in steps (data_res = block_size * dt)
        if nsteps <= 0:
            raise ConfigError("nsteps_block must be positive", file=self.file_for("run"), key="run.nsteps_block")
        threads = run.get("threads") or run.get("local_num_threads") or run.get("n_thread")
        seed = run.get("random_seed") if run.get("random_seed") is not None else run.get("rng_seed")
        cond = self.section("conditions", CONDITIONS_KEYS)
        out = self.section("output", OUTPUT_KEYS)
        output_dir = self.resolve(out["output_dir"], "output", "output.output_dir", must_exist=False)

        def out_file(key: str, default: str | None) -> Path | None:
            """Output files are kept relative to output_dir so `--output-dir` moves them all."""
            val = out.get(key)
            if val is None or val is False:
                val = default
            if val is None:
                return None
            text, prefix = str(val), str(out["output_dir"]).rstrip("/") + "/"
            if text.startswith(prefix):
                text = text[len(prefix):]
            return Path(text)

        order_raw = (out.get("sort_order") or out.get("spikes_sort_order") or "none").lower()
        if order_raw not in SORT_ORDERS:
            raise ConfigError(f"unknown sort order '{order_raw}'", file=self.file_for("output"),
                              key="output.spikes_sort_order", fix="use one of: none, time, id")
        output = OutputConfig(
            output_dir=output_dir,
            log_file=out_file("log_file", None) if out.get("log_file") is not False else None,
            spikes_file=out_file("spikes_file", "spikes.h5"),
            spikes_file_csv=out_file("spikes_file_csv", None),
            spikes_sort_order=SORT_ORDERS[order_raw],
            overwrite_output_dir=out["overwrite_output_dir"],
            log_to_console=out["log_to_console"],
            quiet_simulator=out["quiet_simulator"],
            log_level=str(out["log_level"]).upper(),
        )
        components = {}
        comp_raw = conf.get("components", {}) or {}
        if not isinstance(comp_raw, dict):
            raise ConfigError("'components' must be an object of directory paths", file=self.file_for("components"),
                              key="components")
        for key, val in comp_raw.items():
            if not isinstance(val, str):
                raise ConfigError("must be a path string", file=self.file_for("components"), key=f"components.{key}")
            components[key] = self.resolve(val, "components", f"components.{key}")
        nodes, edges = self.networks()
        node_sets = conf.get("node_sets")
        if node_sets is None and conf.get("node_sets_file"):
            ns_file = self.resolve(conf["node_sets_file"], "node_sets_file", "node_sets_file")
            node_sets = load_json(ns_file, what="node sets")
        node_sets = node_sets or {}
        if not isinstance(node_sets, dict):
            raise ConfigError("node sets must be an object of name -> query", file=self.file_for("node_sets"),
                              key="node_sets")
        inputs = self.named_objects("inputs")
        reports = self.named_objects("reports")
        target = conf.get("target_simulator")
        if target is not None and not isinstance(target, str):
            raise ConfigError("must be a string such as \"NEURON\" or \"NEST\"", file=self.file_for("target_simulator"),
                              key="target_simulator")
        return SimulationConfig(
            path=self.path,
            run=RunConfig(tstart=float(run["tstart"]), tstop=float(run["tstop"]), dt=float(run["dt"]),
                          dL=float(run["dL"]), spike_threshold=float(run["spike_threshold"]), nsteps_block=nsteps,
                          checkpoint_interval=run.get("checkpoint_interval"),
                          threads=int(threads) if threads else None, seed=int(seed) if seed is not None else 0,
                          engine_options={k: run[k] for k in ENGINE_RUN_KEYS if run.get(k) is not None}),
            celsius=float(cond["celsius"]), v_init=float(cond["v_init"]), output=output, components=components,
            nodes=nodes, edges=edges, node_sets=node_sets, inputs=inputs, reports=reports, target_simulator=target,
            warnings=self.warnings, raw=conf,
        )

    def named_objects(self, name: str) -> dict[str, dict[str, Any]]:
        raw = self.conf.get(name, {}) or {}
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise ConfigError(f"'{name}' must map names to objects", file=self.file_for(name), key=name)
        return {k: dict(v) for k, v in raw.items()}

    def networks(self) -> tuple[list[NodeFiles], list[EdgeFiles]]:
        net = self.conf.get("networks", {}) or {}
        if not isinstance(net, dict):
            raise ConfigError("'networks' must be an object with 'nodes' and 'edges' lists",
                              file=self.file_for("networks"), key="networks")
        nodes = [NodeFiles(*self.file_pair(e, f"networks.nodes[{i}]", "nodes"))
                 for i, e in enumerate(net.get("nodes", []) or [])]
        edges = [EdgeFiles(*self.file_pair(e, f"networks.edges[{i}]", "edges"))
                 for i, e in enumerate(net.get("edges", []) or [])]
        if not nodes:
            raise ConfigError("no node files: the config defines no network", file=self.file_for("networks"),
                              key="networks.nodes", fix="list at least one nodes_file/node_types_file pair")
        return nodes, edges

    def file_pair(self, entry: Any, key: str, kind: str) -> tuple[Path, Path, dict[str, Any]]:
        """(h5 file, types CSV, populations) of one `networks.nodes`/`networks.edges` entry."""
        data_key, types_key = f"{kind}_file", f"{kind[:-1]}_types_file"
        if not isinstance(entry, dict) or data_key not in entry:
            raise ConfigError(f"each {kind} entry needs '{data_key}' (and '{types_key}')",
                              file=self.file_for("networks"), key=key)
        if not entry.get(types_key):
            raise ConfigError(f"missing '{types_key}'", file=self.file_for("networks"), key=f"{key}.{types_key}",
                              fix=f"name the {kind[:-1]} types CSV of this {kind} file")
        return (self.resolve(entry[data_key], "networks", f"{key}.{data_key}"),
                self.resolve(entry[types_key], "networks", f"{key}.{types_key}"),
                dict(entry.get("populations", {}) or {}))
