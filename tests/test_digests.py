"""File digests read in chunks equal hashlib over the whole bytes."""

import hashlib

from puhui.digests import CHUNK, sha256_file, sha256_files


def test_chunked_digests_equal_whole_file_digests(tmp_path):
    a, b = tmp_path / "b.bin", tmp_path / "a.bin"
    a.write_bytes(bytes(range(256)) * (CHUNK // 256 * 3 + 7))   # several chunks and a tail
    b.write_bytes(b"")
    assert sha256_file(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for p in sorted([a, b]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    assert sha256_files([a, b]) == h.hexdigest()
