"""Giving memory back to the system after a big refresh (glibc's allocator).

A metrics refresh at 12,500 GPUs parses eight Prometheus answers in worker
threads and remakes every GPU row: a peak of many short-lived objects. Python
frees them, but glibc keeps the freed pages in its arenas (one per thread that
allocated), so a long-running `gpuctl top` stays at its peak RSS. Two calls
fix that where glibc is the allocator, and do nothing elsewhere (musl, macOS):

* `limit_arenas(n)` at start: threads share `n` arenas instead of one each,
  so one thread's freed pages serve the next refresh's allocations. `top`
  takes one (2-7 MiB smaller, its start as fast); a snapshot took ~0.6 s
  longer with one than with two: threads that allocate without the GIL (TLS
  reads of the lists, the request threads) wait on one lock (BENCHMARKS.md
  §8, session 13).
* `release_free_memory()` after a refresh: `malloc_trim(0)` returns the free
  pages of every arena to the system (a few milliseconds; run it off the loop).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_ARENA_MAX = -8  # glibc's mallopt parameter number


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


def limit_arenas(arenas: int = 2) -> bool:
    """Let all threads share at most `arenas` malloc arenas; True when glibc took the setting.

    Call it early (before worker threads start): arenas already made stay."""
    if arenas < 1:
        raise ValueError(f"at least one malloc arena, not {arenas}")
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1


def release_free_memory() -> bool:
    """Return every arena's free pages to the system; True when glibc released some."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1
