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
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from sonatarun.errors import ConfigError
from sonatarun.util.values import is_missing

if TYPE_CHECKING:  # the module is imported by every run; pandas only where a weight function runs
    import pandas as pd

_REGISTRY: dict[str, Callable] = {}


def register_weight_function(name: str | Callable | None = None, fn: Callable | None = None, *,
                             vectorized: bool = False):
    """Register a weight function: ``register_weight_function("name", fn)`` (BMTK's
    ``add_weight_function(fn, name)``), or as a decorator ``@register_weight_function("name")``."""
    if callable(name) and fn is None:  # @register_weight_function without parentheses
        fn, name = name, None

    def deco(f: Callable) -> Callable:
        if not callable(f):
            raise ConfigError(f"weight function '{name}' is not callable", key="weight_function")
        if vectorized:
            f.vectorized = True  # type: ignore[attr-defined]
        _REGISTRY[str(name or f.__name__)] = f
        return f

    if fn is not None:
        return deco(fn)
    return deco


def get(name: str) -> Callable:
    if name not in _REGISTRY:
        raise ConfigError(f"weight_function '{name}' is not defined", key="weight_function",
                          fix="register it in a module named by components.weight_functions "
                              "(@register_weight_function) or use a built-in: " + ", ".join(sorted(_REGISTRY)))
    return _REGISTRY[name]


def load_module(path: Path) -> list[str]:
    """Import a user's Python file: its register_weight_function calls run, and its other top-level
    functions become weight functions under their own names (as BMTK users write them)."""
    import inspect

    path = Path(path)
    if not path.exists():
        raise ConfigError("weight function module not found", file=path, key="weight_functions")
    spec = importlib.util.spec_from_file_location(f"sonatarun_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError("not a Python module", file=path, key="weight_functions", fix="name a .py file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: report as bad input, one line
        raise ConfigError(f"importing it failed: {type(exc).__name__}: {exc}", file=path,
                          key="weight_functions", fix="run the file with python to see the traceback") from exc
    added = []
    for fname, obj in vars(module).items():
        if fname.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module.__name__:
            continue
        if fname not in _REGISTRY:
            _REGISTRY[fname] = obj
            added.append(fname)
    return added


@register_weight_function("default_weight_fnc")
def default_weight_fnc(edge_props, source, target):
    return edge_props["syn_weight"]


@register_weight_function("set_syn_weight")
def set_syn_weight(edge_props, source, target):
    """BMTK's built-in (BioNet and PointNet): the edge's syn_weight."""
    return edge_props["syn_weight"]


@register_weight_function("wmax")
def wmax(edge_props, source, target):
    """BMTK's built-in: the edge's syn_weight used as the maximum weight."""
    return edge_props["syn_weight"]


for _fn in (default_weight_fnc, set_syn_weight, wmax):
    _fn.keeps_syn_weight = True  # type: ignore[attr-defined]  # the weight is syn_weight: nothing to compute


@register_weight_function("gaussianLL", vectorized=True)
def gaussian_ll(edges: pd.DataFrame, sources: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """BMTK's gaussianLL, vectorised: w0 * exp(-(delta/weight_sigma)^2) with BMTK's wrap-around delta,
    ``abs(abs(abs(180 - abs(tgt - src) % 360) - 90) - 90)`` (% binds before -, as in BMTK's source)."""
    src = sources["tuning_angle"].to_numpy(float)
    tgt = targets["tuning_angle"].to_numpy(float)
    delta = np.abs(np.abs(np.abs(180.0 - np.mod(np.abs(tgt - src), 360.0)) - 90.0) - 90.0)
    sigma = edges["weight_sigma"].to_numpy(float)
    return edges["syn_weight"].to_numpy(float) * np.exp(-(delta / sigma) ** 2)


def apply_weight_functions(config, circuit, names: np.ndarray | str, edges: Callable[[], pd.DataFrame],
                           type_row: dict[str, Any], epop: Any, weights: np.ndarray) -> np.ndarray:
    """Each edge's weight from its weight function. `names` is one name for every edge or one
    per edge; `edges` builds the edges' DataFrame, only when a function needs it: BMTK's
    built-ins (wmax, set_syn_weight, default_weight_fnc) return syn_weight unchanged, so a
    network naming only those costs neither a DataFrame nor a call per edge."""
    for key in ("weight_functions",):
        user = config.components.get(key) or config.raw.get("run", {}).get(key)
        if user:
            load_module(Path(user))
    out = np.array(weights, dtype=float)
    if isinstance(names, str) or is_missing(names):
        present = [names]
    else:
        present = list(dict.fromkeys(np.asarray(names, dtype=object).tolist()))
    needed = [n for n in present if not is_missing(n) and not getattr(get(str(n)), "keeps_syn_weight", False)]
    if not needed:
        return out
    props = edges()  # DataFrames are the weight functions' arguments (BMTK's interface)
    for col, val in type_row.items():
        if col not in props.columns:
            props[col] = np.nan if val is None else val
    if "syn_weight" not in props.columns:
        props["syn_weight"] = weights
    src_table = circuit.nodes[epop.source_population].table
    tgt_table = circuit.nodes[epop.target_population].table
    for name in needed:
        rows = np.arange(len(out)) if len(present) == 1 else np.nonzero(np.asarray(names, dtype=object) == name)[0]
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
