"""Render batch scripts from ``launchers/templates/`` with every user value made safe.

A batch script mixes two languages: scheduler directives (``#SBATCH --partition=...``),
which the scheduler parses and which end at a newline, and bash. So the two kinds of
value are handled differently:

- Directive values (job name, partition, account, time, counts) must match a strict
  pattern; anything else is refused with the fix. A newline there would start a new
  line of shell, and no quoting can prevent that.
- Shell values (paths, the command, environment values) are only ever written as
  ``shlex.quote``-d words in assignments and arrays, never spliced into code.

Placeholders are ``{{NAME}}``, replaced in one pass, so a value that itself contains
``{{...}}`` is never expanded again.
"""
from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from sonatarun.errors import InputError

TEMPLATE_FILES = {"slurm": "slurm.sbatch", "pbs": "pbs.pbs", "lsf": "lsf.bsub", "sge": "sge.qsub"}
BODY_FILE = "body.sh"
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_DIRECTIVE_WORD = re.compile(r"[A-Za-z0-9_.+,-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIME = re.compile(r"(?:(\d+)-)?(\d{1,3}):(\d{2}):(\d{2})")


def templates_dir() -> Path:
    """``$SONATARUN_TEMPLATES`` (a site's own copies), else the package's ``launch/templates`` (a link to
    the checkout's ``launchers/templates``, copied into wheels as package data), else the checkout's."""
    override = os.environ.get("SONATARUN_TEMPLATES")
    if override:
        return Path(override)
    packaged = Path(__file__).resolve().parent / "templates"
    if (packaged / BODY_FILE).exists():
        return packaged
    return Path(__file__).resolve().parents[3] / "launchers" / "templates"


def parse_walltime(text: str) -> int:
    """``HH:MM:SS`` or ``D-HH:MM:SS`` -> seconds."""
    m = _TIME.fullmatch(text or "")
    if not m or int(m.group(3)) > 59 or int(m.group(4)) > 59:
        raise InputError(f"walltime {text!r} is not HH:MM:SS", key="--time", fix="e.g. --time 02:00:00")
    days, h, mi, s = (int(g or 0) for g in m.groups())
    total = ((days * 24 + h) * 60 + mi) * 60 + s
    if total <= 0:
        raise InputError("walltime must be longer than zero", key="--time")
    return total


def hms(seconds: int) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h:02d}:{rem // 60:02d}:{rem % 60:02d}"


def default_signal_seconds(walltime: int) -> int:
    """How long before the walltime to ask for a checkpoint: 5 minutes, less on short jobs
    (a tenth of the walltime, at least 30 s) so a short job still runs most of its time."""
    return int(min(300, max(30, walltime // 10)))


def job_name_for(config: str | Path) -> str:
    """A job name every scheduler accepts, from the config's directory and file name."""
    p = Path(config)
    stem = p.stem.replace("config.", "").replace("config", "") or "run"
    name = f"{p.parent.name}-{stem}" if p.parent.name else stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-") or "sonatarun"
    if not name[0].isalpha():
        name = "s" + name  # PBS and SGE want a letter first
    return name[:48]


def check_word(value: str, what: str) -> str:
    """A value that goes into a scheduler directive: letters, digits and ``_ . + , -`` only."""
    if not _DIRECTIVE_WORD.fullmatch(value or ""):
        raise InputError(f"{what} {value!r} has characters a batch directive cannot hold safely", key=what,
                         fix="use only letters, digits and _ . + , -")
    return value


def _q(value: str, what: str) -> str:
    """One shell word that stays on one line.

    ``shlex.quote`` alone would keep a newline inside single quotes, and the next line of
    the file could then start with ``#SBATCH`` (or ``#$``, which Grid Engine may read
    anywhere); so values with control characters use bash's ``$'...'`` with escapes.
    """
    if "\x00" in value:
        raise InputError(f"{what} contains a NUL character", key=what)
    if not any(ord(c) < 32 or ord(c) == 127 for c in value):
        return shlex.quote(value)
    out = []
    for c in value:
        if c in "\\'":
            out.append("\\" + c)
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return "$'" + "".join(out) + "'"


@dataclass
class BatchRequest:
    """The resolved values of one batch script (directive values are checked on render)."""

    scheduler: str
    job_name: str
    nodes: int
    ranks_per_node: int
    threads_per_rank: int
    walltime: int  # seconds
    signal_seconds: int
    workdir: str
    output_dir: str
    script_path: str
    launch: list[str]
    run: list[str]
    env: dict[str, str] = field(default_factory=dict)
    partition: str | None = None
    account: str | None = None
    sge_pe: str = "mpi"

    @property
    def ranks(self) -> int:
        return self.nodes * self.ranks_per_node


def _values_block(req: BatchRequest) -> str:
    lines = [
        f"WORKDIR={_q(req.workdir, 'working directory')}",
        f"OUTPUT_DIR={_q(req.output_dir, 'output directory')}",
        f"SCRIPT={_q(req.script_path, 'script path')}",
        "LAUNCH=(" + " ".join(_q(a, "launcher argument") for a in req.launch) + ")",
        "RUN=(" + " ".join(_q(a, "run argument") for a in req.run) + ")",
    ]
    for name, value in req.env.items():
        if not _ENV_NAME.fullmatch(name):
            raise InputError(f"environment variable name {name!r} is not valid", key="env")
        lines.append(f"export {name}={_q(value, name)}")
    return "\n".join(lines)


def _directive_lines(req: BatchRequest) -> str:
    prefix = {"slurm": "#SBATCH", "pbs": "#PBS", "lsf": "#BSUB", "sge": "#$"}[req.scheduler]
    lines = []
    if req.partition:
        word = check_word(req.partition, "--partition")
        lines.append({"slurm": f"{prefix} --partition={word}", "pbs": f"{prefix} -q {word}",
                      "lsf": f"{prefix} -q {word}", "sge": f"{prefix} -q {word}"}[req.scheduler])
    if req.account:
        word = check_word(req.account, "--account")
        lines.append({"slurm": f"{prefix} --account={word}", "pbs": f"{prefix} -A {word}",
                      "lsf": f"{prefix} -P {word}", "sge": f"{prefix} -P {word}"}[req.scheduler])
    return "\n".join(lines)


def render_batch(req: BatchRequest, directory: Path | None = None) -> str:
    """The batch script text for ``req``."""
    if req.scheduler not in TEMPLATE_FILES:
        raise InputError(f"no batch template for scheduler {req.scheduler!r}", key="--scheduler",
                         fix=f"use one of {', '.join(TEMPLATE_FILES)}")
    for n, what in ((req.nodes, "--nodes"), (req.ranks_per_node, "ranks per node"),
                    (req.threads_per_rank, "threads per rank")):
        if not isinstance(n, int) or n < 1:
            raise InputError(f"{what} must be a positive integer, not {n!r}", key=what)
    directory = directory or templates_dir()
    try:
        text = (directory / TEMPLATE_FILES[req.scheduler]).read_text()
        body = (directory / BODY_FILE).read_text()
    except OSError as exc:
        raise InputError(f"cannot read the batch templates in {directory}: {exc.strerror}",
                         fix="set SONATARUN_TEMPLATES to the launchers/templates directory") from exc
    walltime = req.walltime
    signal_s = max(1, min(req.signal_seconds, walltime - 1))
    values = {
        "JOB_NAME": check_word(req.job_name, "job name"),
        "NODES": str(req.nodes),
        "RANKS_PER_NODE": str(req.ranks_per_node),
        "THREADS_PER_RANK": str(req.threads_per_rank),
        "RANKS": str(req.ranks),
        "CORES_PER_NODE": str(req.ranks_per_node * req.threads_per_rank),
        "SLOTS": str(req.ranks * req.threads_per_rank),
        "TIME": hms(walltime),
        "TIME_HM": f"{walltime // 3600}:{math.ceil((walltime % 3600) / 60):02d}"
        if walltime % 3600 else f"{walltime // 3600}:00",
        "SOFT_TIME": hms(walltime - signal_s),
        "WALLTIME_SECONDS": str(walltime),
        "SIGNAL_SECONDS": str(signal_s),
        "SIGNAL_MINUTES": str(max(1, math.ceil(signal_s / 60))),
        "SGE_PE": check_word(req.sge_pe, "--sge-pe"),
        "DIRECTIVES": _directive_lines(req),
        "VALUES": _values_block(req),
    }
    values["BODY"] = _PLACEHOLDER.sub(lambda m: values[m.group(1)], body)

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise InputError(f"template {TEMPLATE_FILES[req.scheduler]} uses an unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(sub, text)


def submit_command(scheduler: str, script: str, log: str) -> tuple[list[str], bool]:
    """(argv, script_on_stdin) that submits ``script`` with its log at ``log``.

    Paths go on the submit command line, not into directives, so they may contain anything.
    """
    if scheduler == "slurm":
        return ["sbatch", "--parsable", f"--output={log}", script], False
    if scheduler == "pbs":
        return ["qsub", "-o", log, "-j", "oe", script], False
    if scheduler == "lsf":
        return ["bsub", "-o", log], True  # bsub reads #BSUB lines only from a script on stdin
    if scheduler == "sge":
        return ["qsub", "-terse", "-o", log, "-j", "y", script], False
    raise InputError(f"no submit command for scheduler {scheduler!r}", key="--scheduler")


def log_pattern(scheduler: str) -> str:
    """File name of the job log, with the scheduler's job-id pattern where it has one."""
    return {"slurm": "%j.log", "pbs": "log", "lsf": "%J.log", "sge": "log"}[scheduler]
