"""Current and voltage clamps (`current_clamp`/IClamp, `voltage_clamp`/SEClamp), as BMTK names them."""
from __future__ import annotations

from typing import Any

import numpy as np

from sonatarun.engines.base import CurrentClamp, VoltageClamp
from sonatarun.errors import ConfigError


def _as_list(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def _targets(name: str, cfg: dict[str, Any], ctx) -> np.ndarray:
    spec = cfg.get("node_set", "all")
    selection = ctx.all_nodes(non_virtual=True) if spec == "all" else ctx.node_set(spec, key=f"inputs.{name}.node_set")
    gids = np.concatenate([ctx.circuit.gids(p, ids) for p, ids in selection.items()]) if selection else \
        np.zeros(0, np.int64)
    return gids[ctx.owned(gids)]


def _section(cfg: dict[str, Any]) -> tuple[str, float]:
    name = str(cfg.get("section_name", "soma"))
    index = int(cfg.get("section_index", 0))
    return (name if index == 0 or "[" in name else f"{name}[{index}]"), float(cfg.get("section_dist", 0.5))


def current_clamp(name: str, cfg: dict[str, Any], ctx) -> list[CurrentClamp]:
    file = ctx.config.source_of("inputs")
    missing = [k for k in ("amp", "delay", "duration") if k not in cfg]
    if missing:
        raise ConfigError(f"current clamp needs {', '.join(missing)}", file=file, key=f"inputs.{name}.{missing[0]}",
                          fix="give amp (nA), delay (ms) and duration (ms), as numbers or lists of equal length")
    amps, delays, durs = _as_list(cfg["amp"]), _as_list(cfg["delay"]), _as_list(cfg["duration"])
    if not len(amps) == len(delays) == len(durs):
        raise ConfigError(f"amp, delay and duration have lengths {len(amps)}, {len(delays)}, {len(durs)}",
                          file=file, key=f"inputs.{name}", fix="give lists of equal length (one entry per pulse)")
    section, x = _section(cfg)
    return [CurrentClamp(name=name, gids=_targets(name, cfg, ctx), amps=amps, delays=delays, durations=durs,
                         section=section, section_x=x)]


def voltage_clamp(name: str, cfg: dict[str, Any], ctx) -> list[VoltageClamp]:
    """BMTK's form (amp, delay, duration, resistance) or explicit level/duration lists (amps, durations)."""
    file = ctx.config.source_of("inputs")
    if "amps" in cfg:
        amps, durs = _as_list(cfg["amps"]), _as_list(cfg.get("durations", []))
    elif "amp" in cfg and "duration" in cfg:
        # BMTK's SEClamp module disconnects the clamp (rs = 1e20) outside [delay, delay + duration];
        # a NaN level means "disconnected" to the engines
        amps = [float("nan"), float(cfg["amp"])]
        durs = [float(cfg.get("delay", 0.0)), float(cfg["duration"])]
    else:
        raise ConfigError("voltage clamp needs amp and duration (and delay), or amps and durations lists",
                          file=file, key=f"inputs.{name}.amp", fix='e.g. "amp": -70.0, "delay": 100, "duration": 200')
    if len(amps) != len(durs):
        raise ConfigError("amps and durations must have the same length", file=file, key=f"inputs.{name}.durations")
    section, x = _section(cfg)
    rs = float(cfg.get("resistance", cfg.get("rs", 1.0)))
    return [VoltageClamp(name=name, gids=_targets(name, cfg, ctx), amps=amps, durations=durs, rs=rs,
                         section=section, section_x=x)]
