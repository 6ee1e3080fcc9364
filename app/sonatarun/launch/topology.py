"""How many cores this process may really use, and how they are grouped.

``os.cpu_count()`` lies in three common ways: it counts hardware threads, not cores; it
ignores the affinity mask a scheduler or ``taskset`` set; and it ignores a container's
cgroup CPU quota. Each of these is read here from the files the kernel exposes, under a
``root`` directory so a test can build a fake ``/sys``, ``/proc`` and cgroup tree, and the
smallest honest count wins.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Topology:
    """What the planner needs to know about this node."""

    logical_cpus: int  # online hardware threads
    physical_cores: int  # online cores (hardware threads collapsed)
    sockets: int
    numa_nodes: int
    threads_per_core: int
    affinity: tuple[int, ...]  # hardware threads this process may run on
    affinity_cores: int  # physical cores touched by the affinity mask
    cgroup_version: int | None  # 1, 2, or None when no CPU limit was found
    cgroup_cpu_limit: float | None  # quota / period, in CPUs
    memory_bytes: int | None  # min(physical memory, cgroup memory limit)
    usable_cores: int  # the smallest honest count: what the planner divides
    cores_per_numa: int  # usable cores in one NUMA node (or socket), for NEST's hybrid plan
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["affinity"] = list(self.affinity)
        d["reasons"] = list(self.reasons)
        return d


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]`` (the kernel's list format)."""
    cpus: list[int] = []
    for part in filter(None, (p.strip() for p in text.strip().split(","))):
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return sorted(set(cpus))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_layout(root: Path) -> dict[int, tuple[int, int]]:
    """Map each online CPU to (package id, core id)."""
    base = root / "sys/devices/system/cpu"
    online_txt = _read(base / "online")
    if online_txt:
        online = parse_cpulist(online_txt)
    else:
        online = sorted(int(p.name[3:]) for p in base.glob("cpu[0-9]*")) if base.exists() else []
    layout: dict[int, tuple[int, int]] = {}
    for cpu in online:
        topo = base / f"cpu{cpu}" / "topology"
        pkg = _read(topo / "physical_package_id")
        core = _read(topo / "core_id")
        siblings = _read(topo / "thread_siblings_list") or _read(topo / "core_cpus_list")
        pkg_i = int(pkg) if pkg not in (None, "-1") else 0
        if core is not None:
            # core_id is only unique within a package; siblings name the core uniquely.
            key = min(parse_cpulist(siblings)) if siblings else int(core)
            layout[cpu] = (pkg_i, key)
        else:
            layout[cpu] = (pkg_i, cpu)
    return layout


def _numa_nodes(root: Path) -> list[list[int]]:
    base = root / "sys/devices/system/node"
    nodes = []
    for d in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        cpus = _read(d / "cpulist")
        if cpus:
            nodes.append(parse_cpulist(cpus))
    return nodes


def _affinity(root: Path) -> list[int] | None:
    status = _read(root / "proc/self/status")
    if status:
        m = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
        if m:
            return parse_cpulist(m.group(1))
    if root == Path("/") and hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return None


def _cgroup_paths(root: Path) -> dict[str, str]:
    """Controller name -> cgroup path of this process ("" key for the v2 unified tree)."""
    text = _read(root / "proc/self/cgroup") or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup dir of this process and its parents up to the mount; a path that does not
    exist under the mount (a container that sees the host's path) falls back to the mount."""
    rel = path.strip("/")
    dirs = []
    if rel:
        p = mount / rel
        if p.is_dir():
            while True:
                dirs.append(p)
                if p == mount:
                    break
                p = p.parent
            return dirs
    return [mount]


def _v2_mount(root: Path) -> Path | None:
    for cand in (root / "sys/fs/cgroup", root / "sys/fs/cgroup/unified"):
        if (cand / "cgroup.controllers").exists():
            return cand
    return None


def _cgroup_cpu(root: Path, paths: dict[str, str]) -> tuple[int | None, float | None, list[int] | None, list[str]]:
    """(version, CPU limit, cpuset, reasons) from cgroup v1 or v2, the tightest over ancestors."""
    reasons: list[str] = []
    limit: float | None = None
    cpuset: list[int] | None = None
    version: int | None = None

    def tighten(value: float, where: Path, ver: int) -> None:
        nonlocal limit, version
        if limit is None or value < limit:
            limit, version = value, ver
            reasons.append(f"cgroup v{ver} CPU quota {value:g} CPUs ({where})")

    # v1: a cpu (or cpu,cpuacct) hierarchy with cfs_quota_us / cfs_period_us.
    if "cpu" in paths:
        for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
            mount = root / "sys/fs/cgroup" / name
            if mount.is_dir():
                for d in _ancestors(mount, paths["cpu"]):
                    q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                    if q and p and int(q) > 0 and int(p) > 0:
                        tighten(int(q) / int(p), d, 1)
                break
    if "cpuset" in paths:
        mount = root / "sys/fs/cgroup/cpuset"
        if mount.is_dir():
            for d in _ancestors(mount, paths["cpuset"]):
                cs = _read(d / "cpuset.effective_cpus") or _read(d / "cpuset.cpus")
                if cs:
                    cpuset = parse_cpulist(cs)
                    break
    # v2: cpu.max ("max 100000" or "200000 100000") in the unified tree.
    mount = _v2_mount(root)
    if mount is not None and "" in paths:
        for d in _ancestors(mount, paths[""]):
            cm = _read(d / "cpu.max")
            if cm:
                q, _, p = cm.partition(" ")
                if q != "max" and p and int(p) > 0:
                    tighten(int(q) / int(p), d, 2)
        if cpuset is None:
            for d in _ancestors(mount, paths[""]):
                cs = _read(d / "cpuset.cpus.effective")
                if cs:
                    cpuset = parse_cpulist(cs)
                    break
    return version, limit, cpuset, reasons


def _cgroup_memory(root: Path, paths: dict[str, str]) -> int | None:
    limits = []
    if "memory" in paths:
        mount = root / "sys/fs/cgroup/memory"
        if mount.is_dir():
            for d in _ancestors(mount, paths["memory"]):
                v = _read(d / "memory.limit_in_bytes")
                if v and v.isdigit() and int(v) < 2**60:
                    limits.append(int(v))
    mount = _v2_mount(root)
    if mount is not None and "" in paths:
        for d in _ancestors(mount, paths[""]):
            v = _read(d / "memory.max")
            if v and v.isdigit():
                limits.append(int(v))
    return min(limits) if limits else None


def _physical_memory(root: Path) -> int | None:
    if root == Path("/"):
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except Exception:  # pragma: no cover - psutil is a dependency
            pass
    meminfo = _read(root / "proc/meminfo")
    if meminfo:
        m = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.M)
        if m:
            return int(m.group(1)) * 1024
    return None


def detect_topology(root: str | Path = "/") -> Topology:
    """Read the topology of this node (or of the fake tree under ``root``)."""
    root = Path(root)
    reasons: list[str] = []
    layout = _cpu_layout(root)
    if not layout:
        n = (os.cpu_count() or 1) if root == Path("/") else 1
        layout = {i: (0, i) for i in range(n)}
        reasons.append("no /sys CPU topology: counting every CPU as a core")
    logical = len(layout)
    cores = len(set(layout.values()))
    sockets = len({pkg for pkg, _ in layout.values()})
    tpc = max(1, round(logical / cores))
    numa = _numa_nodes(root)

    affinity = _affinity(root)
    allowed = [c for c in (affinity if affinity is not None else layout) if c in layout]
    paths = _cgroup_paths(root)
    version, quota, cpuset, cg_reasons = _cgroup_cpu(root, paths)
    if cpuset is not None:
        narrowed = [c for c in allowed if c in cpuset]
        if narrowed and len(narrowed) < len(allowed):
            reasons.append(f"cgroup cpuset allows CPUs {_fmt(narrowed)}")
            allowed = narrowed
    if not allowed:
        allowed = sorted(layout)
    if len(allowed) < logical:
        reasons.append(f"affinity mask allows {len(allowed)} of {logical} hardware threads ({_fmt(allowed)})")
    affinity_cores = len({layout[c] for c in allowed})

    usable = affinity_cores
    why = f"{affinity_cores} physical cores in the affinity mask"
    if tpc > 1:
        why += f" ({tpc} hardware threads per core not counted)"
    if quota is not None:
        reasons.extend(cg_reasons)
        q = max(1, math.floor(quota + 1e-9))
        if q < usable:
            usable = q
            why = f"cgroup v{version} quota of {quota:g} CPUs"
    reasons.insert(0, f"usable cores: {usable} ({why})")

    # Cores per NUMA node (falling back to sockets), counted inside the usable set.
    domains = [d for d in ([set(n) & set(allowed) for n in numa] if numa else []) if d]
    if not domains:
        by_pkg: dict[int, set[int]] = {}
        for c in allowed:
            by_pkg.setdefault(layout[c][0], set()).add(c)
        domains = list(by_pkg.values())
    per_domain = min(len({layout[c] for c in d}) for d in domains) if domains else usable
    per_domain = max(1, min(per_domain, usable))

    memory = _physical_memory(root)
    cg_mem = _cgroup_memory(root, paths)
    if cg_mem is not None and (memory is None or cg_mem < memory):
        reasons.append(f"cgroup memory limit {cg_mem / 2**30:.1f} GiB")
        memory = cg_mem

    return Topology(logical_cpus=logical, physical_cores=cores, sockets=sockets,
                    numa_nodes=max(1, len(numa)), threads_per_core=tpc, affinity=tuple(allowed),
                    affinity_cores=affinity_cores, cgroup_version=version, cgroup_cpu_limit=quota,
                    memory_bytes=memory, usable_cores=usable, cores_per_numa=per_domain,
                    reasons=tuple(reasons))


def _fmt(cpus: list[int]) -> str:
    """Compress a CPU list back to the kernel's range form, for messages."""
    out, start, prev = [], None, None
    for c in sorted(cpus):
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            out.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = c
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(out)
