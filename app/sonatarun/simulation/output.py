"""The output directory: overwrite policy, the single-run lock, and the run's log."""
from __future__ import annotations

import fcntl
import logging
import os
import sys
from pathlib import Path

from sonatarun.errors import OutputError

LOCK_NAME = ".sonatarun.lock"


class OutputLock:
    """An flock on a file in the output dir: a second live run is refused, and a killed run's
    lock vanishes with its process (the kernel drops flocks), so nothing is ever stuck."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fh = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise OutputError(f"the output directory is in use by a running simulation ({holder})",
                              file=self.path.parent, fix="wait for it to finish, or choose another --output-dir")
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def check_output_dir(directory: Path, overwrite: bool, *, resume: bool = False) -> None:
    """Refuse to touch a non-empty output dir when the config says not to overwrite (before any write)."""
    if resume or not directory.exists():
        return
    if not directory.is_dir():
        raise OutputError("output_dir exists and is not a directory", file=directory,
                          fix="choose another output_dir")
    contents = [p for p in directory.iterdir() if p.name != LOCK_NAME]
    if contents and not overwrite:
        raise OutputError("output directory is not empty and overwrite_output_dir is false", file=directory,
                          fix="set output.overwrite_output_dir to true, remove the directory, or use --output-dir")


def setup_logging(log_file: Path | None, to_console: bool, level: str, rank: int, *, debug: bool = False) -> logging.Logger:
    """The 'sonatarun' logger: rank 0 writes to the console and log file, other ranks only warnings."""
    log = logging.getLogger("sonatarun")
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else getattr(logging, level, logging.INFO))
    fmt = logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    if rank == 0:
        if to_console:
            ch = logging.StreamHandler(sys.stdout)
            ch.setFormatter(fmt)
            log.addHandler(ch)
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(log_file, mode="a")
            fh.setFormatter(fmt)
            log.addHandler(fh)
    else:
        eh = logging.StreamHandler(sys.stderr)
        eh.setLevel(logging.WARNING)
        eh.setFormatter(logging.Formatter(f"[rank {rank}] %(levelname)s %(message)s"))
        log.addHandler(eh)
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


RUN_RECORD = "sonatarun.json"


def write_run_record(directory: Path, record: dict) -> None:
    """What ran and how long it took, for `sonatarun summary` and for humans (written atomically)."""
    import json

    tmp = directory / f".{RUN_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, directory / RUN_RECORD)
