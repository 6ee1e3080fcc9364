"""What the run record says about the process's memory: peak RSS and whether malloc was
given huge pages (launch/hugepages.py), so a slow or large run can be told apart from one
that simply lacked them. (How much memory actually sits on huge pages is in
/proc/<pid>/smaps_rollup, but reading it walks every mapping: ~10 ms at the end of a run.)"""
from __future__ import annotations

import os
import resource
import sys


def memory_summary() -> dict[str, float | bool | None]:
    """Peak resident memory (MB) and whether malloc was asked for huge pages at process start."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_mb = peak_kb / (1024 * 1024) if sys.platform == "darwin" else peak_kb / 1024
    return {"peak_rss_mb": round(peak_mb, 1), "malloc_hugetlb": "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "")}
