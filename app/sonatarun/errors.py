"""Error classes. The CLI turns any :class:`SonataRunError` into one line and exit code 2.

A message names the file, the key and the fix, so a user never needs a traceback
to know what to change (``--debug`` shows it anyway).
"""
from __future__ import annotations

from pathlib import Path


class SonataRunError(Exception):
    """Base of every error that is the user's input, not a bug in sonatarun."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | Path | None = None, key: str | None = None,
                 fix: str | None = None) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.key = key
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.key:
            where.append(f"key '{self.key}'")
        text = (": ".join([", ".join(where), self.message]) if where else self.message)
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class ConfigError(SonataRunError):
    """The simulation config is missing, malformed or inconsistent."""


class CircuitError(SonataRunError):
    """A node or edge file does not hold what the config says it does."""


class InputError(SonataRunError):
    """An input (spike train, clamp) cannot be applied."""


class EngineError(SonataRunError):
    """The chosen engine cannot run this model (missing mechanism, no MPI, ...)."""


class OutputError(SonataRunError):
    """The output directory cannot be used (exists and must not be overwritten, locked, ...)."""


class Interrupted(SonataRunError):
    """A signal asked the run to stop; a checkpoint was written. Exit code 75 (EX_TEMPFAIL)."""

    exit_code = 75
