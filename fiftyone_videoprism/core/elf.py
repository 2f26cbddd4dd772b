"""Renaming a shared library's exported symbols in a private copy of the file.

OpenBLAS exports batched GEMMs under MKL's names but not with MKL's arguments. Loaded into the
global symbol scope (as :mod:`fiftyone_videoprism.core.blas` does for MLX) they would take the
place of the MKL that PyTorch links in, and torch's batched matmul would crash (seen with torch
2.13). MLX does not call them, so the copy that is loaded has them renamed.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path

MKL_CLASHES = frozenset(
    name.encode()
    for t in "sdcz"
    for name in (f"cblas_{t}gemm_batch", f"cblas_{t}gemm_batch_strided", f"{t}gemm_batch_",
                 f"{t}gemm_batch_strided_")
)
_COPY_VERSION = b"1"  # part of the copy's cache key: bump when the renaming changes


def dynamic_names(data: bytes | bytearray) -> tuple[list[tuple[bytes, int, int]], set[int]]:
    """A 64-bit little-endian ELF file's dynamic symbols as (name, name offset, section index),
    and the indices of the symbols its own relocations refer to."""
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        raise ValueError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    # (type, offset, size, link) of every section header
    sections = [struct.unpack_from("<4xI16xQQI", data, shoff + i * shentsize) for i in range(shnum)]
    dynsym = next(i for i, sec in enumerate(sections) if sec[0] == 11)  # SHT_DYNSYM
    _, sym_offset, sym_size, strtab = sections[dynsym]
    str_offset = sections[strtab][1]
    symbols = []
    for i in range(sym_size // 24):
        st_name, st_shndx = struct.unpack_from("<I2xH", data, sym_offset + 24 * i)
        end = data.index(b"\0", str_offset + st_name)
        symbols.append((bytes(data[str_offset + st_name:end]), str_offset + st_name, st_shndx))
    referenced = set()
    for kind, offset, size, link in sections:
        if kind == 4 and link == dynsym:  # SHT_RELA entries: offset, info (symbol << 32), addend
            for j in range(size // 24):
                referenced.add(struct.unpack_from("<Q", data, offset + 24 * j + 8)[0] >> 32)
    return symbols, referenced


def private_copy(library: Path, cache_folder: Path) -> Path:
    """A copy of ``library`` (cached) in which the names in MKL_CLASHES are renamed so that no
    other library binds to them; every other symbol is untouched (checked after the change).
    Kept under ``cache_folder``, else a temporary folder when that is not writable."""
    stat = library.stat()
    key = hashlib.sha256(b"%s|%d|%d|%s" % (str(library.resolve()).encode(), stat.st_size,
                                             stat.st_mtime_ns, _COPY_VERSION)).hexdigest()[:16]
    folders = [cache_folder / key,
               Path(tempfile.gettempdir()) / f"fiftyone-videoprism-blas-{os.getuid()}" / key]
    for folder in folders:
        if (folder / library.name).is_file():
            return folder / library.name
    data = bytearray(library.read_bytes())
    before, referenced = dynamic_names(data)
    for index, (name, offset, section) in enumerate(before):
        if name in MKL_CLASHES and section != 0:  # defined here, not imported
            if index in referenced:
                raise ValueError(f"{library.name} uses {name.decode()} itself")
            # Same length, so no offset moves; the symbol hash tables no longer match the name.
            data[offset] = ord("_")
    after, _ = dynamic_names(data)
    changed = {old for (old, *_), (new, *_) in zip(before, after) if old != new}
    if not changed <= MKL_CLASHES:
        raise ValueError(f"renaming in {library.name} would also change {sorted(changed)}")
    for folder in folders:  # the temporary folder when the user cache is not writable
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        except OSError as err:
            failure = err
            continue
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, folder / library.name)  # atomic: a concurrent import sees all or none
        return folder / library.name
    raise failure
