"""What the run record says about the process's memory: peak RSS and how much of it is
backed by huge pages (launch/hugepages.py), so a slow or large run can be told apart from
one that simply lacked them."""
from __future__ import annotations

import os
import resource
import sys


def memory_summary() -> dict[str, float | bool | None]:
    """Peak resident memory (MB), anonymous memory on huge pages now (MB, None where the kernel
    does not say), and whether malloc was asked for huge pages at process start."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_mb = peak_kb / (1024 * 1024) if sys.platform == "darwin" else peak_kb / 1024
    huge_mb = None
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("AnonHugePages:"):
                    huge_mb = int(line.split()[1]) / 1024
                    break
    except (OSError, ValueError):
        pass
    return {"peak_rss_mb": round(peak_mb, 1), "anon_huge_pages_mb": None if huge_mb is None else round(huge_mb, 1),
            "malloc_hugetlb": "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "")}
