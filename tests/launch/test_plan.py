"""Run plans: ranks x threads per engine, launcher, environment and command, from given facts."""
from __future__ import annotations

import json

import pytest

from sonatarun.errors import InputError
from sonatarun.launch.plan import make_plan
from sonatarun.launch.scheduler import Allocation, detect_scheduler
from sonatarun.launch.topology import detect_topology
from tests.conftest import EXAMPLES, mpiexec, run_sonatarun
from tests.launch.helpers import read_spikes
from tests.launch.test_topology import fake_node

RING = EXAMPLES / "ring_intfire" / "config.simulation.json"
NEST = EXAMPLES / "point_nest" / "config.simulation.json"


@pytest.fixture
def node(tmp_path):
    """A 2-socket, 4-NUMA-domain node with 16 cores and SMT."""
    fake_node(tmp_path / "root", sockets=2, cores=8, smt=2, numa_per_socket=2)
    return detect_topology(tmp_path / "root")


def test_neuron_one_rank_per_core_under_slurm(node, monkeypatch):
    monkeypatch.delenv("MPI_LIB_NRN_PATH", raising=False)  # found, not inherited from an earlier test
    alloc = detect_scheduler({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "32", "SLURM_JOB_NUM_NODES": "2",
                              "SLURM_TASKS_PER_NODE": "16(x2)", "SLURM_JOB_NODELIST": "n[1-2]"})
    p = make_plan(RING, topology=node, allocation=alloc, extra=["--output-dir", "out"])
    assert (p.engine, p.scheduler, p.nodes, p.ranks_per_node, p.threads_per_rank, p.ranks) == \
        ("NEURON", "slurm", 2, 16, 1, 32)
    assert p.command[:6] == ["srun", "--mpi=pmi2", "--ntasks=32", "--nodes=2", "--cpus-per-task=1",
                             "--kill-on-bad-exit=1"]
    assert p.command[-4:] == ["run", str(RING), "--output-dir", "out"]
    assert p.env["SRUN_CPUS_PER_TASK"] == "1" and p.env["OMP_NUM_THREADS"] == "1"
    assert p.env.get("MPI_LIB_NRN_PATH", "").endswith(("libmpi.so.12", "libmpi.so"))
    # Outside a scheduler: this node's 16 physical cores (not its 32 hardware threads), mpiexec.
    q = make_plan(RING, topology=node, allocation=Allocation("none"))
    assert (q.ranks, q.launcher, q.threads_per_rank) == (16, "mpiexec", 1)
    assert q.command[1:3] == ["-n", "16"]
    f = make_plan(RING, topology=node, allocation=detect_scheduler(
        {"FLUX_JOB_ID": "f1", "FLUX_URI": "local:///x", "FLUX_JOB_NNODES": "2", "FLUX_JOB_SIZE": "8"}))
    assert f.command[:5] == ["flux", "run", "--ntasks=8", "--nodes=2", "--cores-per-task=1"]


def test_nest_is_one_rank_of_threads_per_node_and_ranks_need_mpi(node):
    none = Allocation("none")
    p = make_plan(NEST, topology=node, allocation=none, nest_mpi=True)
    assert (p.ranks, p.threads_per_rank, p.launcher) == (1, 16, "none")  # one node: threads only
    assert p.command[-2:] == ["--threads", "16"] and p.env["OMP_NUM_THREADS"] == "16"
    assert any("one rank per node" in r for r in p.reasons)
    per_core = make_plan(NEST, topology=node, allocation=none, nest_mpi=True, threads=4)
    assert (per_core.ranks, per_core.threads_per_rank) == (4, 4)  # asked threads: ranks fill the node
    assert (make_plan(NEST, topology=node, allocation=none, nest_mpi=False, threads=4).ranks) == 1
    two = make_plan(NEST, topology=node, allocation=none, nest_mpi=True, np=2, threads=8)
    assert (two.ranks, two.threads_per_rank, two.launcher) == (2, 8, "mpiexec")
    assert two.command[-2:] == ["--threads", "8"]
    slurm = Allocation("slurm", "7", ("n1", "n2"), (1, 1), cpus_per_task=16)
    s = make_plan(NEST, topology=node, allocation=slurm, nest_mpi=True)
    assert (s.nodes, s.ranks, s.threads_per_rank, s.launcher) == (2, 2, 16, "srun")
    w = make_plan(NEST, topology=node, allocation=none, nest_mpi=False)
    assert (w.ranks, w.threads_per_rank, w.launcher) == (1, 16, "none")
    with pytest.raises(InputError, match="without MPI"):
        make_plan(NEST, topology=node, allocation=none, nest_mpi=False, np=2)
    ws = make_plan(NEST, topology=node, allocation=slurm, nest_mpi=False)
    assert (ws.nodes, ws.ranks, ws.threads_per_rank) == (1, 1, 16)


def test_containers(node):
    slurm = Allocation("slurm", "5", ("n1",), (4,))
    a = make_plan(RING, topology=node, allocation=slurm, container="docker://ghcr.io/x/sonatarun:1")
    i = a.command.index("exec")
    assert a.command[0] == "srun" and a.command[i - 1].endswith(("apptainer", "singularity"))
    assert a.command[a.command.index("docker://ghcr.io/x/sonatarun:1") + 1:][:2] == ["sonatarun", "run"]
    d = make_plan(RING, topology=node, allocation=Allocation("none"), np=2, container="sonatarun:latest")
    assert d.launcher_args == [] and d.command[1] == "run"
    assert d.command[d.command.index("sonatarun:latest") + 1:][:5] == ["mpiexec", "-n", "2", "sonatarun", "run"]
    with pytest.raises(InputError, match="Apptainer"):
        make_plan(RING, topology=node, allocation=slurm, container="sonatarun:latest")


def test_plan_cli_json_and_launch(tmp_path):
    # `CONFIG -- run args`: argparse would drop that `--` if CONFIG were not part of the remainder.
    out = run_sonatarun("plan", "--json", str(RING), "--", "--output-dir", str(tmp_path / "o"), "--np", "7")
    plan = json.loads(out.stdout)
    for key in ("scheduler", "nodes", "ranks_per_node", "threads_per_rank", "launcher", "container", "env",
                "command"):
        assert key in plan
    assert plan["command"][-4:] == ["--output-dir", str(tmp_path / "o"), "--np", "7"]
    assert json.loads(run_sonatarun("plan", str(RING), "--json", "--np", "2").stdout)["ranks_per_node"] == 2
    text = run_sonatarun("plan", str(RING)).stdout
    assert "why" in text and "one rank per physical core" in text
    bad = run_sonatarun("plan", str(RING), "stray", check=False)
    assert bad.returncode == 2 and "after --" in bad.stderr
    # launch really runs it: 2 ranks give the local run's spikes.
    mpiexec()  # needed: launch starts the ranks with it
    run_sonatarun("launch", str(RING), "--np", "2", "--", "--output-dir", str(tmp_path / "l2"))
    run_sonatarun("run", str(RING), "--output-dir", str(tmp_path / "l1"))
    assert read_spikes(tmp_path / "l2") == read_spikes(tmp_path / "l1")
