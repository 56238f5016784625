"""SHA-256 digests of input files, read in chunks (a fund-data file can be gigabytes).

The ledger records the digest of a batch's data and product (a resumed batch must see
the same inputs), and a pricing manifest the digest of every input (reproduce checks
them first).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def _feed(h, path: Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256, as ``sha256sum`` prints it."""
    h = hashlib.sha256()
    _feed(h, Path(path))
    return h.hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """One digest of several files: for each, in name order, its name then its bytes."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        _feed(h, p)
    return h.hexdigest()
