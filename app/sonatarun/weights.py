"""Weight functions: the `weight_function` edge attribute, as BMTK's add_weight_function.

A weight function takes BMTK's arguments, ``fn(edge_props, source_node, target_node)``
with dict-like rows, and returns the weight; or, marked ``vectorized=True``, takes
``(edges: DataFrame, sources: DataFrame, targets: DataFrame)`` and returns an array
(one call per edge type instead of one per edge). Users register theirs from a
Python module named in the config (`components.weight_functions` or
`run.weight_functions`: a file path).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sonatarun.errors import ConfigError

_REGISTRY: dict[str, Callable] = {}


def register_weight_function(name: str | None = None, *, vectorized: bool = False):
    """Decorator (or call) registering `fn` under `name` (default: its __name__)."""

    def deco(fn: Callable) -> Callable:
        fn.vectorized = vectorized  # type: ignore[attr-defined]
        _REGISTRY[name or fn.__name__] = fn
        return fn

    return deco


def get(name: str) -> Callable:
    if name not in _REGISTRY:
        raise ConfigError(f"weight_function '{name}' is not defined", key="weight_function",
                          fix="register it in a module named by components.weight_functions "
                              "(@register_weight_function) or use a built-in: " + ", ".join(sorted(_REGISTRY)))
    return _REGISTRY[name]


def load_module(path: Path) -> None:
    """Import a user's Python file so its @register_weight_function decorators run."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("weight function module not found", file=path, key="weight_functions")
    spec = importlib.util.spec_from_file_location(f"sonatarun_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]


@register_weight_function("default_weight_fnc")
def default_weight_fnc(edge_props, source, target):
    return edge_props["syn_weight"]


@register_weight_function("wmax")
def wmax(edge_props, source, target):
    """BMTK's built-in: the edge's syn_weight used as the maximum weight."""
    return edge_props["syn_weight"]


@register_weight_function("gaussianLL", vectorized=True)
def gaussian_ll(edges: pd.DataFrame, sources: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """BMTK's gaussianLL: weight falls off with the difference of tuning angles."""
    src = sources["tuning_angle"].to_numpy(float)
    tgt = targets["tuning_angle"].to_numpy(float)
    delta = np.abs(np.abs(src - tgt) - 180.0)
    delta = 180.0 - delta
    sigma = edges["sigma"].to_numpy(float) if "sigma" in edges else np.full(len(edges), 50.0)
    return edges["syn_weight"].to_numpy(float) * np.exp(-(delta / sigma) ** 2)


def apply_weight_functions(config, circuit, names: np.ndarray, edges: pd.DataFrame, type_row: pd.Series,
                           epop: Any, weights: np.ndarray) -> np.ndarray:
    for key in ("weight_functions",):
        user = config.components.get(key) or config.raw.get("run", {}).get(key)
        if user:
            load_module(Path(user))
    out = np.array(weights, dtype=float)
    props = edges.copy()
    for col, val in type_row.items():
        if col not in props.columns:
            props[col] = val
    if "syn_weight" not in props.columns:
        props["syn_weight"] = weights
    src_table = circuit.nodes[epop.source_population].table
    tgt_table = circuit.nodes[epop.target_population].table
    for name in pd.unique(np.asarray(names, dtype=object)):
        if name is None or (isinstance(name, float) and np.isnan(name)):
            continue
        rows = np.nonzero(np.asarray(names, dtype=object) == name)[0]
        fn = get(str(name))
        sub = props.iloc[rows]
        sources = src_table.iloc[sub["source_node_id"].to_numpy()].reset_index(drop=True)
        targets = tgt_table.iloc[sub["target_node_id"].to_numpy()].reset_index(drop=True)
        if getattr(fn, "vectorized", False):
            out[rows] = np.asarray(fn(sub.reset_index(drop=True), sources, targets), dtype=float)
        else:  # BMTK-style per-edge function: the user's code decides, so one call per edge
            recs = sub.to_dict("records")
            out[rows] = [fn(e, s, t) for e, s, t in zip(recs, sources.to_dict("records"),
                                                        targets.to_dict("records"))]
    return out
