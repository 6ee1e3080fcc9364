"""Topology from fake /sys, /proc and cgroup trees: the smallest honest core count wins."""
from __future__ import annotations

from pathlib import Path

from sonatarun.launch.topology import detect_topology


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def fake_node(root: Path, sockets: int = 2, cores: int = 4, smt: int = 2, numa_per_socket: int = 1,
              allowed: str | None = None) -> None:
    """A machine of sockets x cores x smt hardware threads, numbered like Linux does (siblings last)."""
    n = sockets * cores * smt
    write(root, "sys/devices/system/cpu/online", f"0-{n - 1}")
    for cpu in range(n):
        thread, rest = divmod(cpu, sockets * cores)
        sock, core = divmod(rest, cores)
        siblings = ",".join(str(rest + t * sockets * cores) for t in range(smt))
        base = f"sys/devices/system/cpu/cpu{cpu}/topology"
        write(root, f"{base}/physical_package_id", str(sock))
        write(root, f"{base}/core_id", str(core))
        write(root, f"{base}/thread_siblings_list", siblings)
    per = cores // numa_per_socket
    node = 0
    for sock in range(sockets):
        for k in range(numa_per_socket):
            cpus = [sock * cores + k * per + c + t * sockets * cores for t in range(smt) for c in range(per)]
            write(root, f"sys/devices/system/node/node{node}/cpulist", ",".join(map(str, sorted(cpus))))
            node += 1
    write(root, "proc/self/status", f"Name:\tpython\nCpus_allowed_list:\t{allowed or f'0-{n - 1}'}\n")
    write(root, "proc/meminfo", "MemTotal:       65536000 kB\n")


def test_physical_cores_sockets_numa_and_affinity(tmp_path):
    fake_node(tmp_path, sockets=2, cores=4, smt=2, numa_per_socket=2)
    t = detect_topology(tmp_path)
    assert (t.logical_cpus, t.physical_cores, t.sockets, t.numa_nodes, t.threads_per_core) == (16, 8, 2, 4, 2)
    assert t.usable_cores == 8 and t.cores_per_numa == 2
    assert t.memory_bytes == 65536000 * 1024 and t.cgroup_version is None
    # taskset -c 0-2,8-10: three cores with both their threads.
    fake_node(tmp_path, allowed="0-2,8-10")
    t = detect_topology(tmp_path)
    assert (t.affinity_cores, t.usable_cores) == (3, 3)
    assert any("affinity mask allows 6 of 16" in r for r in t.reasons)


def test_cgroup_v1_quota_and_memory(tmp_path):
    fake_node(tmp_path, sockets=1, cores=8, smt=1)
    write(tmp_path, "proc/self/cgroup", "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n3:cpuset:/docker/abc\n")
    cg = "sys/fs/cgroup"
    write(tmp_path, f"{cg}/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000")
    write(tmp_path, f"{cg}/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000")
    write(tmp_path, f"{cg}/cpu,cpuacct/cpu.cfs_quota_us", "-1")
    write(tmp_path, f"{cg}/cpu,cpuacct/cpu.cfs_period_us", "100000")
    write(tmp_path, f"{cg}/cpuset/docker/abc/cpuset.cpus", "0-5")
    write(tmp_path, f"{cg}/memory/docker/abc/memory.limit_in_bytes", str(4 * 2**30))
    t = detect_topology(tmp_path)
    assert t.cgroup_version == 1 and t.cgroup_cpu_limit == 2.5
    assert t.affinity_cores == 6  # the cpuset narrows the mask
    assert t.usable_cores == 2  # floor(2.5): a third rank would be throttled
    assert t.memory_bytes == 4 * 2**30


def test_cgroup_v2_nested_quota(tmp_path):
    fake_node(tmp_path, sockets=1, cores=16, smt=2)
    write(tmp_path, "proc/self/cgroup", "0::/user.slice/job_7/step_0\n")
    cg = "sys/fs/cgroup"
    write(tmp_path, f"{cg}/cgroup.controllers", "cpuset cpu io memory pids\n")
    write(tmp_path, f"{cg}/user.slice/cpu.max", "max 100000")
    write(tmp_path, f"{cg}/user.slice/job_7/cpu.max", "400000 100000")  # the parent is the tighter one
    write(tmp_path, f"{cg}/user.slice/job_7/step_0/cpu.max", "800000 100000")
    write(tmp_path, f"{cg}/user.slice/job_7/step_0/cpuset.cpus.effective", "0-7,16-23")
    write(tmp_path, f"{cg}/user.slice/job_7/memory.max", str(2**30))
    t = detect_topology(tmp_path)
    assert (t.cgroup_version, t.cgroup_cpu_limit, t.affinity_cores, t.usable_cores) == (2, 4.0, 8, 4)
    assert t.memory_bytes == 2**30
    assert t.reasons[0].startswith("usable cores: 4 (cgroup v2 quota")


def test_this_machine():
    t = detect_topology()
    assert 1 <= t.usable_cores <= t.physical_cores <= t.logical_cpus
