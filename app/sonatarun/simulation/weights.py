"""Apply `weight_function` edge attributes (BMTK's add_weight_function equivalent)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from sonatarun.circuit import Circuit
from sonatarun.config import SimulationConfig
from sonatarun.errors import ConfigError


def weight_function_applier(config: SimulationConfig, circuit: Circuit) -> Callable | None:
    """A callable (names, edges, type_row, edge_pop, weights) -> weights, or None when unused."""

    def apply(names: np.ndarray, edges: pd.DataFrame, type_row: pd.Series, epop: Any,
              weights: np.ndarray) -> np.ndarray:
        try:
            from sonatarun import weights as registry
        except ImportError as exc:  # pragma: no cover
            raise ConfigError("weight functions are not available in this build",
                              key="weight_function") from exc
        return registry.apply_weight_functions(config, circuit, names, edges, type_row, epop, weights)

    return apply
