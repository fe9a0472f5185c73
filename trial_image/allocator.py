"""How a training process gets memory: glibc's malloc settings for it, and handing back what data loading freed.

Training allocates and frees activation-sized buffers (megabytes each) at every step. glibc's malloc takes
them from its heap, where the freed buffers of one step do not fit the next step's requests: the heap
grows to about twice what is in use (a trial's peak memory, BENCHMARKS.md). With
`glibc.malloc.mmap_threshold=2097152` every buffer of 2 MiB or more is its own mapping, returned to the
system when freed, so the peak is close to what is in use; `glibc.malloc.hugetlb=1` maps them in transparent
huge pages, which keeps the cost of mapping them anew small. The threshold is the size of one huge page: a
smaller mapping cannot be one and is faulted in 4 KiB pages at every step (a 1 MiB threshold made a 2-thread
envelope-cell trial 1.6 times slower, its 1.6 MB branch buffers mapped anew each step). Without huge pages
the mappings would double the CPU time, so the settings are left out where the kernel has them switched off.
glibc reads GLIBC_TUNABLES when a process starts: `katib-nas trial` and `katib-nas proxyless-search` start
themselves again with it (see katib_nas.cli.main.entry) unless another allocator is preloaded or
GLIBC_TUNABLES already sets malloc.
"""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path
from typing import Mapping

#: The mmap threshold is one transparent huge page (HUGE_PAGE_BYTES), so every mapped buffer can be one.
HUGE_PAGE_BYTES = 2 * 2**20
TUNABLES = f"glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold={HUGE_PAGE_BYTES}"
TRANSPARENT_HUGEPAGES = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def tuned_environment(environ: Mapping[str, str], hugepages: Path = TRANSPARENT_HUGEPAGES) -> dict[str, str] | None:
    """`environ` with TUNABLES added to GLIBC_TUNABLES; None when the process should keep what it has: not
    glibc, another allocator preloaded (LD_PRELOAD), malloc tunables already set, or no transparent huge
    pages."""
    current = environ.get("GLIBC_TUNABLES", "")
    if platform.libc_ver()[0] != "glibc" or environ.get("LD_PRELOAD") or "glibc.malloc." in current:
        return None
    try:
        if "[never]" in hugepages.read_text():
            return None
    except OSError:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{current}:{TUNABLES}" if current else TUNABLES}


def describe(environ: Mapping[str, str]) -> str:
    """Which allocator settings this process started with, for its log."""
    if environ.get("LD_PRELOAD"):
        return f"LD_PRELOAD={environ['LD_PRELOAD']}"
    if environ.get("GLIBC_TUNABLES"):
        return f"GLIBC_TUNABLES={environ['GLIBC_TUNABLES']}"
    return "the C library's default malloc"


def release_free_memory() -> None:
    """Give the freed memory of data loading back to the system before training (tcmalloc, when it is the
    preloaded allocator, keeps it otherwise; glibc trims its heap)."""
    process = ctypes.CDLL(None)
    for name in ("MallocExtension_ReleaseFreeMemory", "malloc_trim"):
        function = getattr(process, name, None)
        if function is not None:
            function(*([0] if name == "malloc_trim" else []))
            return
