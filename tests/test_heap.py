"""selm.heap on glibc: a large block freed and allocated again is served from pages already mapped,
unless the user's environment chose glibc's own policy."""

import ctypes.util
import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

# Allocates, touches and frees a 64 MiB block three times; prints the page faults of the last two.
CHILD = """
import ctypes, ctypes.util, json, mmap, resource
from selm.heap import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size, faults = 64 << 20, []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults[1:], "pages": size // mmap.PAGESIZE}))
"""


def run_child(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", CHILD], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_freed_blocks_are_reused_without_page_faults() -> None:
    assert ctypes.util.find_library("c")
    kept = run_child()
    default = run_child(MALLOC_MMAP_MAX_="65536")  # the user's own setting: glibc's default policy
    assert kept["applied"] and not default["applied"]
    # glibc maps a 64 MiB block afresh each time and faults in every page; kept, the block is
    # carved out of the heap's mapped pages again (a few faults for bookkeeping at most).
    assert all(f >= 0.9 * default["pages"] for f in default["faults"])
    assert all(f <= 0.01 * kept["pages"] for f in kept["faults"])
