"""Keep freed host memory in the process, so that XLA's CPU buffers are not page-faulted in anew
every step.

glibc's ``malloc`` serves every block over its mmap threshold (at most 32 MiB: a 128-channel
float32 map of 256x256 pixels and up, an im2col buffer) with a fresh ``mmap`` and unmaps it on
``free``; the next step's allocation of the same size then touches fresh pages, one page fault
per 4 KiB. ``keep_freed_memory`` turns that off (``mallopt``: no mmapped blocks, no trimming of
the heap's top), so the step reuses the pages of the step before. It also keeps every thread on
the main heap (one arena): a thread of XLA's pool allocating from an arena of its own gets
blocks over that arena's 64 MiB heaps mmapped whatever the setting above says, and XLA
allocates each run's temporary buffer (all of a step's intermediates, hundreds of MiB at 256 px)
on one of its threads, so without it a 256 px denoising step took about 120,000 page faults
(0.3 s of system time) every time. The price: the process keeps its peak resident memory until
it exits. ``python experiments/host_memory_speed.py`` measures what it changes.

Used by the command line and the web app; ``DIPJAX_MALLOC=system`` (or anything but ``keep``)
leaves glibc's defaults. A no-op where ``mallopt`` is missing (macOS, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ENV = "DIPJAX_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's malloc.h
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Stop glibc from returning freed blocks to the OS (see the module's note). Returns
    whether it took effect: False under ``DIPJAX_MALLOC`` other than ``keep``, or without glibc's
    ``mallopt``. Call it before other threads start allocating: a thread that already has an
    arena of its own keeps it, and the threads that start after a late call are spread over the
    arenas that exist by then (the command line calls it first thing, the web page before its
    server starts). Calling it again is harmless."""
    if os.environ.get(ENV, "keep") != "keep":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(
        mallopt(option, value)
        for option, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX), (_M_ARENA_MAX, 1))
    )
