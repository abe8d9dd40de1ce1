"""Keeping freed host memory: a block freed and allocated again is not page-faulted in anew."""

import os
import subprocess
import sys

import pytest

# Allocates and touches a 64 MiB array twice (freed in between) and prints the minor page
# faults of the second time: when glibc unmaps freed blocks, the second array is a fresh mapping
# whose every page faults in (16384 pages of 4 KiB; at least 32 with 2 MiB transparent huge pages).
PROBE = """
import resource, sys
import numpy as np
from dipjax import host_memory
print(host_memory.keep_freed_memory())
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(2**24, np.float32); del a
before = faults()
a = np.ones(2**24, np.float32)
print(faults() - before)
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt",
)


def probe(mode: str) -> tuple[bool, int]:
    env = dict(os.environ, DIPJAX_MALLOC=mode)
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    took, faults = r.stdout.split()
    return took == "True", int(faults)


@glibc
def test_kept_memory_is_reused_without_page_faults():
    took, faults = probe("keep")
    assert took and faults < 8  # the first array's pages, reused


@glibc
def test_system_mode_leaves_glibc_alone():
    took, faults = probe("system")
    assert not took and faults >= 32  # a fresh mapping: every page faulted in
