"""SONATA simulation config reading (BMTK dialect)."""
from sonatarun.config.model import SimulationConfig

__all__ = ["SimulationConfig"]
