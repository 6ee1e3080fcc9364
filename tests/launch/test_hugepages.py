"""With SONATARUN_HUGEPAGES=1, `sonatarun run` re-executes itself once with glibc's malloc huge
pages where they can help (launch/hugepages.py); the run record says whether the run had them."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest

from sonatarun.launch import hugepages
from tests.conftest import need, sonatarun_cmd


ON = {"SONATARUN_HUGEPAGES": "1"}


@pytest.mark.parametrize("mode, env, expected", [
    ("always [madvise] never\n", ON, True),
    ("always [madvise] never\n", dict(ON, GLIBC_TUNABLES="glibc.malloc.arena_max=2"), True),
    ("always [madvise] never\n", dict(ON, GLIBC_TUNABLES="glibc.malloc.hugetlb=0"), False),  # the user's choice
    ("always [madvise] never\n", {}, False),  # off by default
    ("always [madvise] never\n", {"SONATARUN_HUGEPAGES": "0"}, False),
    ("[always] madvise never\n", ON, False),  # every heap page is already huge
    ("always madvise [never]\n", ON, False),
    (None, ON, False),  # no THP in this kernel
])
def test_when_huge_pages_are_asked_for(tmp_path, mode, env, expected):
    mode_file = tmp_path / "enabled"
    if mode is not None:
        mode_file.write_text(mode)
    assert hugepages.wanted(env, str(mode_file)) is (expected and hugepages._glibc_at_least(2, 35))
    if expected:
        tunables = hugepages.environment(env)["GLIBC_TUNABLES"].split(":")
        assert tunables[-1] == "glibc.malloc.hugetlb=1" and len(tunables) == 1 + ("GLIBC_TUNABLES" in env)


def test_the_run_command_gets_them_and_says_so(tmp_copy):
    """Through the real command line: asked for, the run record's `memory.malloc_hugetlb` is what
    this machine allows (True on Debian/Ubuntu defaults with glibc >= 2.35); by default off."""
    need(importlib.util.find_spec("nest") is not None, "NEST (pip install nest-simulator)")
    ex = tmp_copy("point_nest")
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SONATARUN_HUGEPAGES")}
    expected = hugepages.wanted(dict(clean, **ON))
    for out, extra, want in (("on", ON, expected), ("off", {}, False)):
        proc = subprocess.run(sonatarun_cmd("run", str(ex / "config.simulation.json"), "--output-dir", str(ex / out)),
                              cwd=ex, env=dict(clean, **extra), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        record = json.loads((ex / out / "sonatarun.json").read_text())
        assert record["memory"]["malloc_hugetlb"] is want, (out, record["memory"], proc.stderr[-500:])
        assert record["memory"]["peak_rss_mb"] > 10 and record["n_spikes"] > 0
