"""Simulation layer: config + circuit -> engine plan -> block loop -> outputs."""
from sonatarun.simulation.simulation import RunOptions, RunResult, Simulation

__all__ = ["Simulation", "RunOptions", "RunResult"]
