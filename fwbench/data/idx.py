"""The IDX file format of the MNIST distribution, read and written with numpy only.

Layout (LeCun et al.): two zero bytes, a type code, the number of dimensions n, then n
big-endian uint32 sizes, then the values in C order, big-endian. Files may be gzipped.

>>> raw = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
>>> raw[:4], len(raw)
(b'\\x00\\x00\\x08\\x03', 40)
>>> parse_idx(raw)[1, 2].tolist()
[20, 21, 22, 23]
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from fwbench.errors import FwbenchError
from fwbench.records import atomic_write

# type code -> numpy dtype (big-endian where it matters)
DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into a native-endian array."""
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in DTYPES:
        raise FwbenchError(f"{name} is not an IDX file (bad magic number)")
    dtype, ndim = DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FwbenchError(f"{name} is truncated: its IDX header needs {header} bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise FwbenchError(f"{name} holds {len(raw)} bytes but its header {shape} "
                           f"implies {expected}: the file is truncated or corrupted")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzipped or not (detected from its first bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise FwbenchError(f"cannot read IDX file {path}: {e}") from None
    return parse_idx(raw, str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of `array` (uncompressed)."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise FwbenchError(f"IDX cannot store dtype {array.dtype}; use one of: "
                           + ", ".join(str(d) for d in codes))
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzipped when the name ends in .gz; atomic."""
    raw = encode_idx(array)
    if str(path).endswith(".gz"):
        raw = gzip.compress(raw, mtime=0)  # mtime=0: same array, same bytes
    atomic_write(Path(path), raw)
