"""Which batch scheduler (if any) started us, and what it allocated.

Detection reads only the environment and the host files the scheduler writes, so a
recorded environment (a dict) plus a host file in a temp dir reproduces any cluster
in a test. Each scheduler names the same three facts differently: the job id, the
hosts, and how many slots each host got; :class:`Allocation` is that common shape.
"""
from __future__ import annotations

import os
import re
import shutil
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

SCHEDULERS = ("slurm", "pbs", "lsf", "sge", "flux")

# The submit command of each scheduler, looked up on PATH by `doctor` and `submit`.
SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub", "lsf": "bsub", "sge": "qsub", "flux": "flux"}


@dataclass(frozen=True)
class Allocation:
    """What the scheduler gave this job; ``scheduler == "none"`` outside any job."""

    scheduler: str
    job_id: str | None = None
    hosts: tuple[str, ...] = ()
    slots_per_host: tuple[int, ...] = ()
    cpus_per_task: int | None = None
    ntasks: int | None = None
    source: str = ""  # where the facts came from (env var or host file), shown by `plan`
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def in_job(self) -> bool:
        return self.scheduler != "none"

    @property
    def num_nodes(self) -> int:
        return max(1, len(self.hosts)) if self.hosts else 1

    @property
    def total_slots(self) -> int | None:
        if self.ntasks:
            return self.ntasks
        return sum(self.slots_per_host) if self.slots_per_host else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hosts"] = list(self.hosts)
        d["slots_per_host"] = list(self.slots_per_host)
        d["notes"] = list(self.notes)
        d["num_nodes"] = self.num_nodes
        return d


# --------------------------------------------------------------------------- Slurm

def parse_slurm_tasks_per_node(value: str) -> list[int]:
    """Expand Slurm's compressed count list: ``"2(x3),1"`` -> ``[2, 2, 2, 1]``."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part)
        if not m:
            raise ValueError(f"not a Slurm count list: {value!r}")
        out.extend([int(m.group(1))] * int(m.group(2) or 1))
    return out


def _split_top_level(value: str) -> list[str]:
    """Split on commas that are not inside brackets: ``"a[1-2,5],b"`` -> two items."""
    parts, depth, cur = [], 0, []
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def expand_slurm_nodelist(value: str) -> list[str]:
    """Expand a Slurm hostlist: ``"n[01-03,07],gpu5"`` -> ``["n01","n02","n03","n07","gpu5"]``.

    Zero padding is kept (``01-03``), and several bracket groups in one name expand as a
    product, which is what ``scontrol show hostnames`` does; we do it here so detection
    needs no Slurm binaries (and works from a recorded environment).
    """
    hosts: list[str] = []
    for item in _split_top_level(value):
        hosts.extend(_expand_one(item))
    return hosts


def _expand_one(item: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", item)
    if not m:
        return [item]
    prefix, suffix = item[: m.start()], item[m.end():]
    out = []
    for rng in m.group(1).split(","):
        if "-" in rng:
            lo, hi = rng.split("-", 1)
            width = len(lo)
            for i in range(int(lo), int(hi) + 1):
                out.extend(_expand_one(f"{prefix}{i:0{width}d}{suffix}"))
        else:
            out.extend(_expand_one(f"{prefix}{rng}{suffix}"))
    return out


def _int(env: Mapping[str, str], key: str) -> int | None:
    v = env.get(key)
    if v is None or v == "":
        return None
    try:
        return int(v.split("(")[0].split(",")[0])
    except ValueError:
        return None


def _detect_slurm(env: Mapping[str, str]) -> Allocation:
    hosts = expand_slurm_nodelist(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "")
    notes = []
    tpn_raw = env.get("SLURM_TASKS_PER_NODE") or env.get("SLURM_NTASKS_PER_NODE")
    slots = parse_slurm_tasks_per_node(tpn_raw) if tpn_raw else []
    nnodes = _int(env, "SLURM_JOB_NUM_NODES") or _int(env, "SLURM_NNODES")
    if not hosts and nnodes:
        hosts = [f"node{i}" for i in range(nnodes)]
        notes.append("SLURM_JOB_NODELIST missing: host names unknown")
    if slots and len(slots) == 1 and len(hosts) > 1:
        slots = slots * len(hosts)  # SLURM_NTASKS_PER_NODE is a single number
    ntasks = _int(env, "SLURM_NTASKS") or _int(env, "SLURM_NPROCS")
    if not slots and ntasks and hosts:
        per, extra = divmod(ntasks, len(hosts))
        slots = [per + (1 if i < extra else 0) for i in range(len(hosts))]
    return Allocation("slurm", env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"), tuple(hosts), tuple(slots),
                      _int(env, "SLURM_CPUS_PER_TASK"), ntasks, "SLURM_* environment", tuple(notes))


# --------------------------------------------------------------------------- host files

def count_hosts(lines: list[str]) -> "OrderedDict[str, int]":
    """One host per line, repeated once per slot (PBS_NODEFILE, LSB_DJOB_HOSTFILE)."""
    counts: "OrderedDict[str, int]" = OrderedDict()
    for line in lines:
        host = line.strip()
        if host and not host.startswith("#"):
            counts[host] = counts.get(host, 0) + 1
    return counts


def _read_lines(path: str | None) -> list[str] | None:
    if not path:
        return None
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return None


def _detect_pbs(env: Mapping[str, str]) -> Allocation:
    notes = []
    lines = _read_lines(env.get("PBS_NODEFILE"))
    counts = count_hosts(lines) if lines is not None else OrderedDict()
    if lines is None:
        notes.append(f"PBS_NODEFILE unreadable: {env.get('PBS_NODEFILE')!r}")
    ncpus = _int(env, "NCPUS") or _int(env, "PBS_NCPUS")
    if not counts and ncpus:
        counts[env.get("HOSTNAME", "localhost")] = ncpus
    ntasks = _int(env, "PBS_NP") or (sum(counts.values()) if counts else None)
    ompthreads = _int(env, "OMP_NUM_THREADS") if "PBS_JOBID" in env and "NCPUS" in env else None
    return Allocation("pbs", env.get("PBS_JOBID"), tuple(counts), tuple(counts.values()),
                      ompthreads if ompthreads and ompthreads > 1 else None, ntasks,
                      "PBS_NODEFILE" if lines is not None else "NCPUS", tuple(notes))


def parse_lsb_mcpu_hosts(value: str) -> "OrderedDict[str, int]":
    """``"hostA 4 hostB 2"`` -> ``{hostA: 4, hostB: 2}``."""
    toks = value.split()
    counts: "OrderedDict[str, int]" = OrderedDict()
    for host, n in zip(toks[0::2], toks[1::2]):
        counts[host] = counts.get(host, 0) + int(n)
    return counts


def _detect_lsf(env: Mapping[str, str]) -> Allocation:
    lines = _read_lines(env.get("LSB_DJOB_HOSTFILE"))
    if lines is not None:
        counts, source = count_hosts(lines), "LSB_DJOB_HOSTFILE"
    elif env.get("LSB_MCPU_HOSTS"):
        counts, source = parse_lsb_mcpu_hosts(env["LSB_MCPU_HOSTS"]), "LSB_MCPU_HOSTS"
    else:
        hosts = (env.get("LSB_HOSTS") or "").split()
        counts, source = count_hosts(hosts), "LSB_HOSTS"
    return Allocation("lsf", env.get("LSB_JOBID"), tuple(counts), tuple(counts.values()), None,
                      sum(counts.values()) or None, source)


def parse_pe_hostfile(lines: list[str]) -> "OrderedDict[str, int]":
    """SGE's PE_HOSTFILE: ``host slots queue processor-range`` per line."""
    counts: "OrderedDict[str, int]" = OrderedDict()
    for line in lines:
        toks = line.split()
        if len(toks) >= 2 and toks[1].isdigit():
            counts[toks[0]] = counts.get(toks[0], 0) + int(toks[1])
    return counts


def _detect_sge(env: Mapping[str, str]) -> Allocation:
    lines = _read_lines(env.get("PE_HOSTFILE"))
    counts = parse_pe_hostfile(lines) if lines is not None else OrderedDict()
    nslots = _int(env, "NSLOTS")
    if not counts and nslots:
        counts[env.get("HOSTNAME", "localhost")] = nslots
    return Allocation("sge", env.get("JOB_ID"), tuple(counts), tuple(counts.values()), None,
                      nslots or (sum(counts.values()) or None),
                      "PE_HOSTFILE" if lines is not None else "NSLOTS")


def _detect_flux(env: Mapping[str, str]) -> Allocation:
    nnodes = _int(env, "FLUX_JOB_NNODES")
    size = _int(env, "FLUX_JOB_SIZE")
    hosts = tuple(f"node{i}" for i in range(nnodes)) if nnodes else ()
    slots: tuple[int, ...] = ()
    if nnodes and size:
        per, extra = divmod(size, nnodes)
        slots = tuple(per + (1 if i < extra else 0) for i in range(nnodes))
    return Allocation("flux", env.get("FLUX_JOB_ID"), hosts, slots, None, size, "FLUX_* environment")


# --------------------------------------------------------------------------- entry point

def detect_scheduler(env: Mapping[str, str] | None = None) -> Allocation:
    """Detect the scheduler from the environment (``os.environ`` by default).

    The order matters where clusters stack schedulers: a Slurm job launched from a Flux
    instance (or the reverse) is described by the innermost one, which sets its ids last;
    we check the job-id variables in the order that the innermost launcher is most likely.
    SGE's ``JOB_ID`` is generic, so it counts only with ``NSLOTS`` or ``PE_HOSTFILE`` beside it.
    """
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"):
        return _detect_slurm(env)
    if env.get("FLUX_JOB_ID") and env.get("FLUX_URI"):
        return _detect_flux(env)
    if env.get("PBS_JOBID"):
        return _detect_pbs(env)
    if env.get("LSB_JOBID"):
        return _detect_lsf(env)
    if env.get("JOB_ID") and (env.get("NSLOTS") or env.get("PE_HOSTFILE")):
        return _detect_sge(env)
    return Allocation("none", source="no scheduler variables in the environment")


def schedulers_on_path() -> dict[str, str]:
    """Submit commands found on PATH, by scheduler name (for `doctor` and `submit`)."""
    found = {}
    for name, exe in SUBMIT_COMMANDS.items():
        path = shutil.which(exe)
        if not path:
            continue
        if name in ("pbs", "sge"):
            # Both call it qsub: SGE ships qconf, PBS ships pbsnodes/qstat -B.
            if name == "sge" and not shutil.which("qconf"):
                continue
            if name == "pbs" and shutil.which("qconf"):
                continue
        found[name] = path
    return found
