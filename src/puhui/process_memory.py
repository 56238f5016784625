"""Handing freed memory back to the operating system.

A pricing run frees gigabytes between its steps (the validation's hashes, the blocks'
parts), but glibc's allocator keeps freed heap pages for reuse, so the process's
resident set stays at its high-water mark and the next step's peak is added on top.
:func:`release_free_memory` asks the allocator to return what it holds free
(``malloc_trim(0)``); on a system without glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.malloc_trim.restype = ctypes.c_int
                _LIBC = lib
            except (OSError, AttributeError):     # not glibc (musl has no malloc_trim)
                _LIBC = False
    return _LIBC


def _release_arrow_pool() -> None:
    """Hand the free memory of pyarrow's allocator (mimalloc or jemalloc: they keep freed
    pages for reuse) back to the system, when pyarrow is loaded."""
    import sys

    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()


def release_free_memory(collect: bool = True) -> bool:
    """Collect garbage (unless ``collect`` is False) and return the allocator's free
    pages to the system; True when the allocator could be asked (glibc), False
    otherwise."""
    if collect:
        gc.collect()
    _release_arrow_pool()
    lib = _libc()
    if not lib:
        return False
    lib.malloc_trim(0)
    return True
