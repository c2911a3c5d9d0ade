"""Face sets: loaders on generated folders and on ../shared/data/faces, splits, every model."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from fwbench.config import resolve
from fwbench.data import faces
from fwbench.errors import FwbenchError
from fwbench.models import MODELS as REGISTERED
from fwbench.network import build_task
from fwbench.runner import Execution, run_experiment
from fwbench.tasks.faces import fold_split, split_by_group, split_within_groups

SHARED = [d for d in faces.default_dirs() if (d / "yalefaces").is_dir()]
needs_shared = pytest.mark.skipif(not SHARED, reason="face data ../shared/data/faces not present")
MODELS = REGISTERED.names()  # every model, recurrent ones on glimpses, convnet on images


@pytest.fixture(autouse=True)
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("FWBENCH_FACES", raising=False)
    monkeypatch.setenv("FWBENCH_CACHE", str(tmp_path / "cache"))


def _face(rng, label: int, size=(40, 30), mode="L") -> Image.Image:
    """A noisy image with a bright bar whose position tells the class."""
    a = rng.integers(0, 40, (size[1], size[0]), dtype=np.uint8)
    a[4 + 6 * label:8 + 6 * label, :] = 250
    return Image.fromarray(a).convert(mode)


@pytest.fixture
def class_folder(tmp_path):
    """3 classes x 5 images, mixed sizes and modes, plus a stray text file and a hidden file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for k, name in enumerate(["angry", "calm", "glad"]):
        (root / name).mkdir(parents=True)
        for i in range(5):
            _face(rng, k, size=(40 + i, 30), mode="RGB" if i % 2 else "L").save(
                root / name / f"{i}.png")
    (root / "calm" / "notes.txt").write_text("not an image")
    (root / "calm" / ".hidden.png").write_bytes(b"")
    return root


@pytest.fixture
def yale_like(tmp_path):
    """yalefaces/subjectNN.condition GIFs: 5 subjects x (6 expressions + 2 lighting photos)."""
    rng = np.random.default_rng(1)
    d = tmp_path / "faces" / "yalefaces"
    d.mkdir(parents=True)
    for s in range(1, 6):
        for k, cond in enumerate(faces.EXPRESSIONS + ("leftlight", "glasses")):
            _face(rng, k % 3, size=(64, 48)).save(d / f"subject{s:02d}.{cond}", format="GIF")
    return d.parent


def test_square_crop_and_resize_by_hand():
    a = np.zeros((10, 20), dtype=np.uint8)
    a[:, 5:15] = 200  # the centred 10 x 10 square is all 200
    out = faces.square(Image.fromarray(a), 5, 1.0)
    assert out.shape == (5, 5) and (out == 200).all()
    half = faces.square(Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)), 1, 0.5)
    assert half.tolist() == [[round((5 + 6 + 9 + 10) / 4)]]  # BOX: the mean of the centre 2 x 2


def test_folder_loader(class_folder):
    d = faces.load_folder(str(class_folder), size=16)
    assert d.images.shape == (15, 16, 16) and d.images.dtype == np.uint8
    assert d.class_names == ("angry", "calm", "glad") and d.people is None
    assert np.bincount(d.labels).tolist() == [5, 5, 5]


@pytest.fixture
def people_folder(tmp_path):
    """CLASS/PERSON/IMAGE: 2 expressions x 5 people x 2 photos (person p4 shows only one)."""
    rng = np.random.default_rng(2)
    root = tmp_path / "people"
    for k, name in enumerate(["smile", "squint"]):
        for p in range(5 if k == 0 else 4):
            (root / name / f"p{p}").mkdir(parents=True)
            for i in range(2):
                _face(rng, k).save(root / name / f"p{p}" / f"{i}.png")
    return root


def test_folder_of_people_is_split_by_person(people_folder):
    d = faces.load_folder(str(people_folder), size=16)
    assert d.class_names == ("smile", "squint") and len(d.labels) == 18
    assert d.people.tolist() == [0] * 2 + [1] * 2 + [2] * 2 + [3] * 2 + [4] * 2 + \
        [0] * 2 + [1] * 2 + [2] * 2 + [3] * 2  # one id per person name, across classes
    task = build_task(resolve("faces", "lstm", {"dataset": "folder",
                                                "faces_dir": str(people_folder), "size": 16}))
    seen = set()
    for data_seed in range(5):
        idx = split_by_group(d.people, 0.2, 0.2, data_seed)
        splits = task.splits(data_seed)
        assert [len(splits[k].y) for k in ("train", "valid", "test")] == \
            [len(idx[k]) for k in ("train", "valid", "test")]
        people = {k: set(d.people[v].tolist()) for k, v in idx.items()}
        assert not people["test"] & (people["train"] | people["valid"])
        seen |= people["test"]
    assert seen == set(range(5))  # 5 folds: every person tested once


def test_folder_layouts_cannot_be_mixed(people_folder, class_folder):
    (people_folder / "smile" / "loose.png").write_bytes((people_folder / "smile" / "p0" /
                                                         "0.png").read_bytes())
    with pytest.raises(FwbenchError, match="both images and person subfolders"):
        faces.load_folder(str(people_folder), size=16)
    (people_folder / "smile" / "loose.png").unlink()
    (class_folder / "angry").rename(people_folder / "angry")  # images directly in a class
    with pytest.raises(FwbenchError, match="use one layout"):
        faces.load_folder(str(people_folder), size=16)


def test_folder_loader_errors(tmp_path, class_folder):
    with pytest.raises(FwbenchError, match="at least two subfolders"):
        faces.load_folder(str(class_folder / "calm"), size=16)
    (class_folder / "glad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(FwbenchError, match="cannot read image .*broken.png"):
        faces.load_folder(str(class_folder), size=16)
    with pytest.raises(FwbenchError, match="not a directory"):
        faces.load_folder(str(tmp_path / "nowhere"), size=16)


def test_yale_expression_split_is_by_person(yale_like):
    task = build_task(resolve("faces", "lstm", {"faces_dir": str(yale_like), "size": 16}))
    d = task.data()
    assert task.num_classes == 6 and len(d.labels) == 5 * 6  # lighting photos left out
    tested = []
    for seed in range(5):  # test_frac 0.2: five folds, each person tested exactly once
        s = split_by_group(d.people, 0.2, 0.2, seed)
        people = {k: set(d.people[v]) for k, v in s.items()}
        assert not people["test"] & (people["train"] | people["valid"])
        assert not people["valid"] & people["train"]
        tested += sorted(people["test"])
        assert sorted(np.concatenate(list(s.values()))) == list(range(len(d.labels)))
    assert sorted(tested) == list(range(5))


def test_yale_identity_uses_every_photo_split_within_person(yale_like):
    task = build_task(resolve("faces", "lstm", {"faces_dir": str(yale_like), "size": 16,
                                                "dataset": "yale-identity"}))
    s = task.splits(0)
    assert task.num_classes == 5 and sum(len(v) for v in s.values()) == 5 * 8
    for split in s.values():  # every person in every split
        assert sorted(split.y.unique().tolist()) == list(range(5))


def test_split_helpers_are_deterministic_and_partition():
    groups = np.repeat(np.arange(7), 4)
    a, b = split_within_groups(groups, 0.25, 0.25, 3), split_within_groups(groups, 0.25, 0.25, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [np.bincount(groups[a[k]]).tolist() for k in ("train", "valid", "test")] == \
        [[2] * 7, [1] * 7, [1] * 7]
    assert not np.array_equal(a["test"], split_within_groups(groups, 0.25, 0.25, 1)["test"])
    parts = fold_split(np.arange(10), 0.2, 0.3, 0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(10))
    assert (len(parts["test"]), len(parts["valid"])) == (4, 2)  # 3 folds of 4, 3, 3


def test_olivetti_checksum_and_layout(tmp_path, monkeypatch):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (20, 64, 64), dtype=np.uint8)  # 2 people x 10
    d = tmp_path / "oli"
    d.mkdir()
    # column-major images in columns, as in the published file
    savemat(d / faces.OLIVETTI_FILE, {"faces": imgs.transpose(0, 2, 1).reshape(20, -1).T})
    with pytest.raises(FwbenchError, match="checksum mismatch .* neither published hash"):
        faces.load_olivetti(str(d), size=64)
    digest = hashlib.sha256((d / faces.OLIVETTI_FILE).read_bytes()).hexdigest()
    monkeypatch.setattr(faces, "OLIVETTI_SHA256", (digest,))
    got = faces.load_olivetti(str(d), size=64)
    np.testing.assert_array_equal(got.images, imgs)  # the transpose puts images upright
    assert got.labels.tolist() == [0] * 10 + [1] * 10
    with pytest.raises(FwbenchError, match="olivettifaces.mat not found"):
        faces.load_olivetti(str(tmp_path), size=64)


def test_missing_data_and_bad_settings_are_clear(tmp_path):
    with pytest.raises(FwbenchError, match="yalefaces not found in .*--faces_dir"):
        build_task(resolve("faces", "lstm", {"faces_dir": str(tmp_path)})).splits(0)
    with pytest.raises(FwbenchError, match="multiple of 4"):
        resolve("faces", "lstm", {"size": 50})
    with pytest.raises(FwbenchError, match="needs --faces_dir"):
        resolve("faces", "lstm", {"dataset": "folder"})


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_on_faces(class_folder, tmp_path, model):
    over = {"channels": "4,4"} if model == "convnet" else {}
    cfg = resolve("faces", model, {"dataset": "folder", "faces_dir": str(class_folder),
                                   "size": 16, "hidden": 8, "readout": 8, "max_steps": 2,
                                   "eval_every": 2, "log_every": 1, **over})
    out = run_experiment(cfg, Execution(results=tmp_path, threads=1, progress=False))
    assert out.summary["status"] == "completed" and out.summary["steps"] == 2
    assert 0 <= out.summary["test_error"] <= 1


@needs_shared
def test_shared_yale_and_olivetti():
    yale = faces.load_yale("", "expression", size=48)
    assert yale.images.shape == (90, 48, 48) and len(set(yale.people)) == 15
    assert np.bincount(yale.labels).tolist() == [15] * 6
    ident = faces.load_yale("", "identity", size=48)
    assert len(ident.labels) == 164 and len(ident.class_names) == 15
    oli = faces.load_olivetti("", size=48)
    assert oli.images.shape == (400, 48, 48) and np.bincount(oli.labels).tolist() == [10] * 40
    task = build_task(resolve("faces", "fastweights", {}))
    s = task.splits(0)
    assert s["train"].x.shape[1:] == (1, 48, 48) and task.num_classes == 6
    assert task.encoder("sequence")[0](s["test"].x[:2]).shape == (2, 24, 12 * 12 + 2 + 16)
    assert float(s["train"].x.std()) > 0.1  # real faces, not blank images
    assert isinstance(s["test"].y, torch.Tensor) and len(s["test"]) == 18
