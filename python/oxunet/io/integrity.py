"""Is a file complete? SimpleITK zero-fills a truncated ``.nii.gz`` (or ``.nii``) without a
word, so verification reads the stream itself."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

CHUNK = 1 << 22


def incomplete_reason(path: str | Path) -> str | None:
    """Why `path` is truncated or corrupt (a gzip stream that ends early or fails its CRC, a
    NIfTI file shorter than its header says), or None when it reads through."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(352)
                size = len(head)
                while chunk := f.read(CHUNK):
                    size += len(chunk)
        except (EOFError, OSError, zlib.error) as e:
            return f"truncated or corrupt gzip stream ({e})"
        if name.endswith(".nii.gz"):
            return _nifti_short(head, size)
        return None
    if name.endswith(".nii"):
        with open(path, "rb") as f:
            head = f.read(352)
        return _nifti_short(head, path.stat().st_size)
    return None


def _nifti_short(head: bytes, size: int) -> str | None:
    """NIfTI-1: vox_offset + prod(dim) × bitpix / 8 bytes must be there."""
    if len(head) < 348:
        return f"{size} bytes, shorter than a NIfTI header"
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr == 348:
            break
    else:
        return None  # not NIfTI-1 (e.g. NIfTI-2): leave it to the reader
    dims = struct.unpack(endian + "8h", head[40:56])
    bitpix = struct.unpack(endian + "h", head[72:74])[0]
    vox_offset = struct.unpack(endian + "f", head[108:112])[0]
    n = 1
    for d in dims[1:1 + max(0, min(dims[0], 7))]:
        n *= max(int(d), 1)
    need = int(vox_offset) + n * max(int(bitpix), 8) // 8
    if size < need:
        return f"truncated: {size} bytes of image data where the header needs {need}"
    return None
