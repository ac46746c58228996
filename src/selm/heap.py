"""Keep freed memory in the process heap on CPU, so a training step's large buffers are reused.

glibc serves every allocation above 32 MiB with its own ``mmap`` and gives it back with ``munmap``
when freed. A training step on a large vocabulary allocates many such buffers (Gemma-3's [V, H]
gradients and logit chunks are 671 MB and 33 MB), so every step maps them afresh and the kernel
faults in and zeroes each page again: on the Gemma-3-270M shape that was 3.7 M page faults and
25 s of system time over three steps, against 1.5 M and 5 s with the heap kept
(docs/performance.md, "Where the step's time goes"). With ``mmap`` off and trimming off, freed
blocks stay in the heap and the next step's buffers are carved out of pages already mapped. Peak
RSS does not change (a step needs its buffers either way); RSS no longer falls between steps.

A user who set ``MALLOC_MMAP_MAX_`` or ``MALLOC_TRIM_THRESHOLD_`` keeps their own setting; on a C
library other than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")

_applied = False


def keep_freed_memory() -> bool:
    """Stop glibc from returning freed memory to the OS (once per process; see the module docstring).

    Returns:
        True when the setting is in effect (now or from an earlier call), False when the user's
        environment chose otherwise or the C library is not glibc.
    """
    global _applied
    if _applied:
        return True
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # A trim threshold of -1 turns trimming off (mallopt(3)).
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    if _applied:
        logger.debug("glibc: freed memory stays in the heap (M_MMAP_MAX 0, no trimming)")
    return _applied
