"""Scheduler detection from recorded job environments and the host files schedulers write."""
from __future__ import annotations

import pytest

from sonatarun.launch.scheduler import (detect_scheduler, expand_slurm_nodelist, parse_slurm_tasks_per_node)


def test_slurm_heterogeneous_job():
    # Recorded from `env` inside `sbatch -N4 -n7` (tasks spread 2,2,2,1).
    env = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "7", "SLURM_CPUS_PER_TASK": "2", "SLURM_JOB_NUM_NODES": "4",
           "SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_JOB_NODELIST": "cn[007-009],gpu1"}
    a = detect_scheduler(env)
    assert (a.scheduler, a.job_id, a.num_nodes, a.ntasks, a.cpus_per_task) == ("slurm", "4242", 4, 7, 2)
    assert a.hosts == ("cn007", "cn008", "cn009", "gpu1")
    assert a.slots_per_host == (2, 2, 2, 1)
    assert expand_slurm_nodelist("r[1-2]n[01,03]") == ["r1n01", "r1n03", "r2n01", "r2n03"]
    assert parse_slurm_tasks_per_node("16(x2)") == [16, 16]
    with pytest.raises(ValueError):
        parse_slurm_tasks_per_node("2(y3)")


def test_pbs_nodefile(tmp_path):
    nodefile = tmp_path / "aggregate" / "4242.pbs01"
    nodefile.parent.mkdir()
    nodefile.write_text("n01\nn01\nn01\nn02\nn02\nn02\n")
    a = detect_scheduler({"PBS_JOBID": "4242.pbs01", "PBS_NODEFILE": str(nodefile), "NCPUS": "3"})
    assert (a.scheduler, a.job_id, a.hosts, a.slots_per_host, a.total_slots) == \
        ("pbs", "4242.pbs01", ("n01", "n02"), (3, 3), 6)
    # No readable node file: NCPUS on this host, and the note says why.
    b = detect_scheduler({"PBS_JOBID": "1", "PBS_NODEFILE": str(tmp_path / "gone"), "NCPUS": "8", "HOSTNAME": "h"})
    assert b.hosts == ("h",) and b.slots_per_host == (8,) and "unreadable" in b.notes[0]


def test_lsf_hostfile_and_mcpu_hosts(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("a1\na1\na2\na2\na2\n")
    a = detect_scheduler({"LSB_JOBID": "77", "LSB_DJOB_HOSTFILE": str(hostfile), "LSB_MCPU_HOSTS": "x 1"})
    assert (a.scheduler, a.hosts, a.slots_per_host, a.source) == ("lsf", ("a1", "a2"), (2, 3), "LSB_DJOB_HOSTFILE")
    b = detect_scheduler({"LSB_JOBID": "78", "LSB_MCPU_HOSTS": "hostA 4 hostB 2"})
    assert (b.hosts, b.slots_per_host, b.total_slots) == (("hostA", "hostB"), (4, 2), 6)


def test_sge_pe_hostfile(tmp_path):
    pe = tmp_path / "pe_hostfile"
    pe.write_text("node1.cluster 8 all.q@node1.cluster UNDEFINED\nnode2.cluster 4 all.q@node2.cluster 0,1\n")
    a = detect_scheduler({"JOB_ID": "9", "NSLOTS": "12", "PE_HOSTFILE": str(pe)})
    assert (a.scheduler, a.job_id, a.hosts, a.slots_per_host, a.total_slots) == \
        ("sge", "9", ("node1.cluster", "node2.cluster"), (8, 4), 12)
    # JOB_ID alone is too common a name to mean Grid Engine.
    assert detect_scheduler({"JOB_ID": "9"}).scheduler == "none"


def test_flux_and_none():
    a = detect_scheduler({"FLUX_JOB_ID": "f2wzvDe", "FLUX_URI": "local:///run/flux/local", "FLUX_JOB_NNODES": "2",
                          "FLUX_JOB_SIZE": "6"})
    assert (a.scheduler, a.num_nodes, a.slots_per_host) == ("flux", 2, (3, 3))
    assert detect_scheduler({"HOME": "/root", "PATH": "/bin"}).scheduler == "none"
