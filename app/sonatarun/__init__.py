"""sonatarun: run SONATA brain-network models on NEURON and NEST.

The public surface is deliberately small: :class:`Simulation` and the error
classes. Everything else is internal and may change.
"""
from sonatarun.errors import SonataRunError, ConfigError, CircuitError, InputError

__version__ = "0.1.0"

__all__ = ["Simulation", "SonataRunError", "ConfigError", "CircuitError", "InputError", "__version__"]


def __getattr__(name: str):
    # Imported lazily: importing sonatarun must not import NEURON or MPI (the CLI's
    # `--version`, `plan` and `doctor` work without engines).
    if name == "Simulation":
        from sonatarun.simulation import Simulation

        return Simulation
    raise AttributeError(name)
