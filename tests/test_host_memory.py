"""Keeping freed host memory: a block freed and allocated again is not page-faulted in anew."""

import os
import subprocess
import sys

import pytest

# Allocates and touches a 64 MiB array twice (freed in between) and prints the minor page
# faults of the second time: when glibc unmaps freed blocks, the second array is a fresh mapping
# whose every page faults in (16384 pages of 4 KiB; at least 32 with 2 MiB transparent huge pages).
# With THREAD, the arrays are allocated by another thread (as XLA's pool allocates a step's
# buffers), 96 MiB each: more than a thread arena's 64 MiB heap, which glibc then mmaps whatever
# M_MMAP_MAX says unless that thread allocates from the main heap.
PROBE = """
import resource, sys, threading
import numpy as np
from dipjax import host_memory
print(host_memory.keep_freed_memory())
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = 2**24 * (6 if THREAD else 4) // 4
def twice(out):
    a = np.ones(n, np.float32); del a
    before = faults()
    a = np.ones(n, np.float32)
    out.append(faults() - before)
out = []
if THREAD:
    t = threading.Thread(target=twice, args=(out,)); t.start(); t.join()
else:
    twice(out)
print(out[0])
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt",
)


def probe(mode: str, thread: bool = False, tunables: str | None = None) -> tuple[bool, int]:
    env = dict(os.environ, DIPJAX_MALLOC=mode)
    env.pop("GLIBC_TUNABLES", None)
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    code = f"THREAD = {thread}\n" + PROBE
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    took, faults = r.stdout.split()
    return took == "True", int(faults)


@glibc
@pytest.mark.parametrize("thread", [False, True])
def test_kept_memory_is_reused_without_page_faults(thread):
    took, faults = probe("keep", thread)
    assert took and faults < 8  # the first array's pages, reused


@glibc
@pytest.mark.parametrize("thread", [False, True])
def test_system_mode_leaves_glibc_alone(thread):
    took, faults = probe("system", thread)
    assert not took and faults >= 32  # a fresh mapping: every page faulted in


@glibc
def test_without_one_arena_another_threads_block_is_mapped_afresh():
    # keep_freed_memory's setting before it capped the arenas (no mmapped blocks, no trimming):
    # a thread's own arena still maps the 96 MiB block anew, every page faulting in
    took, faults = probe(
        "system", True, "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
    )
    assert not took and faults >= 32
