"""sonatarun: run SONATA brain-network models on NEURON and NEST.

The public surface is deliberately small: :class:`Simulation` and the error
classes. Everything else is internal and may change.
"""
__version__ = "0.1.0"

__all__ = ["Simulation", "SonataRunError", "ConfigError", "CircuitError", "InputError", "__version__"]


def __getattr__(name: str):
    # Imported lazily: importing sonatarun must not import NEURON or MPI (the CLI's
    # `--version`, `plan` and `doctor` work without engines), nor anything before the
    # `run` command has decided whether to re-execute itself (launch/hugepages.py).
    if name == "Simulation":
        from sonatarun.simulation import Simulation

        return Simulation
    if name in ("SonataRunError", "ConfigError", "CircuitError", "InputError"):
        from sonatarun import errors

        return getattr(errors, name)
    raise AttributeError(name)
