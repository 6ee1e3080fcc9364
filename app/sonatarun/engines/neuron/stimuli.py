"""Current and voltage clamps on NEURON cells, scheduled natively (no Python during the run).

* :class:`CurrentClamp`: one ``IClamp`` per (amp, delay, duration) entry at the
  chosen segment (BMTK's ``AmpsReaderNRN.create_clamps``), so lists make pulse trains.
* :class:`VoltageClamp`: an ``SEClamp`` whose command level and series
  resistance follow the steps with ``Vector.play`` events. A NaN amplitude means
  "clamp disconnected" for that step (series resistance 1e20 MOhm), which is what
  BMTK's ``SEClamp`` module does outside ``[delay, delay+duration]`` by editing
  ``rs`` from Python every step; after the last step the clamp is disconnected.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from sonatarun.engines.base import CurrentClamp, RunSettings, VoltageClamp
from sonatarun.errors import EngineError, InputError

OFF_RS = 1.0e20


def _targets(stim: Any, cells: dict[int, Any]) -> list[Any]:
    """The rank-local cells of a clamp; other ranks' gids are skipped (each rank applies its own)."""
    return [cells[int(g)] for g in np.asarray(stim.gids).tolist() if int(g) in cells]


def current_clamp(stim: CurrentClamp, cells: dict[int, Any]) -> list[Any]:
    from neuron import h

    n = len(stim.amps)
    if not (len(stim.delays) == n and len(stim.durations) == n):
        raise InputError(f"current clamp '{stim.name}' has {n} amps, {len(stim.delays)} delays and "
                         f"{len(stim.durations)} durations", key=f"inputs.{stim.name}",
                         fix="give amp, delay and duration as numbers or as lists of equal length")
    keep: list[Any] = []
    for cell in _targets(stim, cells):
        seg = cell.segment(stim.section, stim.section_x)
        for amp, delay, dur in zip(stim.amps, stim.delays, stim.durations):
            clamp = h.IClamp(seg)
            clamp.amp = float(amp)
            clamp.delay = float(delay)
            clamp.dur = float(dur)
            keep.append(clamp)
    return keep


def voltage_clamp(stim: VoltageClamp, cells: dict[int, Any], settings: RunSettings) -> list[Any]:
    from neuron import h

    if len(stim.amps) != len(stim.durations) or not stim.amps:
        raise InputError(f"voltage clamp '{stim.name}' needs one duration per amplitude",
                         key=f"inputs.{stim.name}", fix="give amp and duration lists of equal length")
    starts = np.concatenate([[0.0], np.cumsum(np.asarray(stim.durations, dtype=float))])
    levels = [0.0 if (a is None or math.isnan(float(a))) else float(a) for a in stim.amps] + [0.0]
    rs = [OFF_RS if (a is None or math.isnan(float(a))) else float(stim.rs) for a in stim.amps] + [OFF_RS]
    keep: list[Any] = []
    for cell in _targets(stim, cells):
        seg = cell.segment(stim.section, stim.section_x)
        clamp = h.SEClamp(seg)
        clamp.dur1 = 1e9
        clamp.amp1 = levels[0]
        clamp.rs = rs[0]
        tvec = h.Vector(starts)
        avec = h.Vector(levels)
        rvec = h.Vector(rs)
        avec.play(clamp._ref_amp1, tvec)
        rvec.play(clamp._ref_rs, tvec)
        keep.extend([clamp, tvec, avec, rvec])
    return keep


def apply(stimulus: Any, cells: dict[int, Any], settings: RunSettings) -> list[Any]:
    """Entry point used by the engine's ``add_stimulus``; returns objects to keep alive."""
    if isinstance(stimulus, CurrentClamp):
        return current_clamp(stimulus, cells)
    if isinstance(stimulus, VoltageClamp):
        return voltage_clamp(stimulus, cells, settings)
    raise EngineError(f"input '{getattr(stimulus, 'name', stimulus)}' of kind {type(stimulus).__name__} is not "
                      f"supported by the NEURON engine", key="inputs")
