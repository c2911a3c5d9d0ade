"""Face image sets: Yale (expressions or identities), Olivetti (identities), or any folder.

Every image becomes a square greyscale uint8 array [size, size] [C]: the centred square whose
side is `crop` times the shorter side of the image is cut out, then resized with area averaging
(Pillow's BOX filter). `crop = 0` picks the set's default: 0.8 for Yale (320 x 243 photos with
background around the face), 1.0 for Olivetti (already tight 64 x 64 faces) and folders.

Where the data lives: the `faces_dir` setting, else $FWBENCH_FACES, else `../shared/data/faces`
relative to the current directory, then relative to the repository. That directory holds
`yalefaces/` (files `subjectNN.condition`) and `olivettifaces.mat`; a missing Olivetti file is
downloaded into fwbench's cache from its published URL and checked by sha256.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from fwbench.data.cache import cache_dir, sha256_of
from fwbench.errors import FwbenchError

EXPRESSIONS = ("happy", "normal", "sad", "sleepy", "surprised", "wink")
YALE_NAME = re.compile(r"^subject(\d+)\.([a-z]+)(\.[a-z0-9]+)?$")
OLIVETTI_FILE = "olivettifaces.mat"
OLIVETTI_URL = "https://ndownloader.figshare.com/files/5976027"
# both published copies hold the same images (the bytes of the two .mat files differ)
OLIVETTI_SHA256 = ("b1988d02c72fe5b8ee82b5ef3bb7982eafc74f1e1ff0ae0ade35061ad0af534d",
                   "b612fb967f2dc77c9c62d3e1266e0c73d5fca46a4b8906c18e454d41af987794")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".pgm", ".ppm", ".tif", ".tiff",
                  ".webp"}
DEFAULT_CROP = {"yale": 0.8, "olivetti": 1.0, "folder": 1.0}


@dataclasses.dataclass
class FaceSet:
    """Images uint8 [N, S, S], labels int64 [N], person ids int64 [N] (None if unknown)."""

    images: np.ndarray
    labels: np.ndarray
    people: np.ndarray | None
    class_names: tuple[str, ...]
    source: str


def default_dirs() -> list[Path]:
    """Where face data is looked for when no directory is given, in order."""
    env = os.environ.get("FWBENCH_FACES")
    repo = Path(__file__).resolve().parents[2]
    dirs = [Path(env).expanduser()] if env else []
    return dirs + [Path.cwd() / ".." / "shared" / "data" / "faces",
                   repo / ".." / "shared" / "data" / "faces"]


def find_dir(faces_dir: str, wanted: str) -> Path:
    """The directory holding `wanted` (a file or folder name): `faces_dir` or the defaults."""
    dirs = [Path(faces_dir).expanduser()] if faces_dir else default_dirs()
    for d in dirs:
        if (d / wanted).exists():
            return d.resolve()
    raise FwbenchError(f"{wanted} not found in {', '.join(map(str, dirs))}; give the directory "
                       "that holds it with --faces_dir or the FWBENCH_FACES variable")


def square(img, size: int, crop: float) -> np.ndarray:
    """A Pillow image -> centred square crop (`crop` x shorter side) resized to size x size."""
    from PIL import Image

    img = img.convert("L")
    w, h = img.size
    side = max(1, int(round(crop * min(w, h))))
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def _open(path: Path, size: int, crop: float) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return square(img, size, crop)
    except (OSError, UnidentifiedImageError) as e:
        raise FwbenchError(f"cannot read image {path}: {e}") from None


def load_yale(faces_dir: str, labels: str, size: int, crop: float = 0.0) -> FaceSet:
    """Yale faces labelled by expression (6 classes) or identity (15 subjects, all photos)."""
    root = find_dir(faces_dir, "yalefaces") / "yalefaces"
    crop = crop or DEFAULT_CROP["yale"]
    items = []
    for p in sorted(root.iterdir()):
        m = YALE_NAME.match(p.name)
        if m and (labels == "identity" or m.group(2) in EXPRESSIONS):
            items.append((p, int(m.group(1)), m.group(2)))
    if not items:
        raise FwbenchError(f"no Yale images (files named subjectNN.condition) in {root}")
    subjects = sorted({s for _, s, _ in items})
    people = np.array([subjects.index(s) for _, s, _ in items], dtype=np.int64)
    if labels == "identity":
        names, y = tuple(f"subject{s:02d}" for s in subjects), people.copy()
    else:
        names = EXPRESSIONS
        y = np.array([EXPRESSIONS.index(c) for _, _, c in items], dtype=np.int64)
    images = np.stack([_open(p, size, crop) for p, _, _ in items])
    return FaceSet(images, y, people, names, f"Yale faces in {root}")


def olivetti_file(faces_dir: str) -> Path:
    """A checked local olivettifaces.mat, else one downloaded into the cache (sha256-checked)."""
    try:
        path = find_dir(faces_dir, OLIVETTI_FILE) / OLIVETTI_FILE
    except FwbenchError:
        if faces_dir:
            raise
        return _download_olivetti()
    digest = sha256_of(path)
    if digest not in OLIVETTI_SHA256:
        raise FwbenchError(f"checksum mismatch for {path}: sha256 {digest} is neither published "
                           f"hash ({', '.join(OLIVETTI_SHA256)}); the file is not used")
    return path


def _download_olivetti() -> Path:
    import pooch

    pooch.get_logger().setLevel("WARNING")
    dest = cache_dir() / "faces"
    try:
        return Path(pooch.retrieve(OLIVETTI_URL, known_hash=f"sha256:{OLIVETTI_SHA256[1]}",
                                   fname=OLIVETTI_FILE, path=dest, progressbar=False))
    except ValueError as e:  # pooch's hash check
        raise FwbenchError(f"checksum mismatch for {OLIVETTI_FILE} from {OLIVETTI_URL}: {e}") \
            from None
    except Exception as e:  # network errors come in many types
        raise FwbenchError(f"{OLIVETTI_FILE} not found locally and its download from "
                           f"{OLIVETTI_URL} failed ({type(e).__name__}); give --faces_dir") \
            from None


def load_olivetti(faces_dir: str, size: int, crop: float = 0.0) -> FaceSet:
    """The 400 Olivetti faces, 10 per person, labelled by identity (40 classes)."""
    from PIL import Image
    from scipy.io import loadmat

    path = olivetti_file(faces_dir)
    faces = loadmat(path)["faces"]  # [4096, 400], each column a column-major 64 x 64 image
    imgs = faces.T.reshape(-1, 64, 64).transpose(0, 2, 1)  # -> row-major [400, 64, 64]
    crop = crop or DEFAULT_CROP["olivetti"]
    images = np.stack([square(Image.fromarray(np.asarray(im, dtype=np.uint8)), size, crop)
                       for im in imgs])
    people = np.repeat(np.arange(len(imgs) // 10), 10).astype(np.int64)
    names = tuple(f"person{i:02d}" for i in range(people.max() + 1))
    return FaceSet(images, people.copy(), people, names, f"Olivetti faces {path}")


def load_folder(folder: str, size: int, crop: float = 0.0) -> FaceSet:
    """Images in one subfolder per class (sorted names are the classes). Inside a class folder
    the images lie either directly (people unknown: the task splits within each class) or in one
    subfolder per person, `CLASS/PERSON/IMAGE` (a person's folders share one name across
    classes; the task then splits by person, so test people are never seen in training)."""
    if not folder:
        raise FwbenchError("dataset 'folder' needs --faces_dir: a directory with one subfolder "
                           "of images per class")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FwbenchError(f"faces_dir {root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    crop = crop or DEFAULT_CROP["folder"]
    images, labels, owners, layouts = [], [], [], set()
    for k, name in enumerate(classes):
        for person, files in _class_files(root / name):
            images += [_open(p, size, crop) for p in files]
            labels += [k] * len(files)
            owners += [person] * len(files)
            layouts.add(person is None)
    counts = np.bincount(labels, minlength=len(classes)) if labels else []
    if len(classes) < 2 or min(counts) == 0:
        raise FwbenchError(f"{root} must hold at least two subfolders (one per class), each with "
                           f"images ({', '.join(sorted(IMAGE_SUFFIXES))}) or with one subfolder "
                           "of images per person")
    if len(layouts) > 1:
        raise FwbenchError(f"{root}: some classes hold images directly and others in person "
                           "subfolders; use one layout: CLASS/IMAGE, or CLASS/PERSON/IMAGE")
    people = None
    if layouts == {False}:
        names = sorted(set(owners))
        people = np.array([names.index(o) for o in owners], dtype=np.int64)
    return FaceSet(np.stack(images), np.array(labels, dtype=np.int64), people, tuple(classes),
                   f"image folder {root}")


def _class_files(folder: Path) -> list[tuple[str | None, list[Path]]]:
    """(person or None, image files) of one class folder: its images, or its person folders'."""
    def images(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in
                      IMAGE_SUFFIXES and not p.name.startswith("."))
    people = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if people:
        if images(folder):
            raise FwbenchError(f"{folder} holds both images and person subfolders; use one "
                               "layout: CLASS/IMAGE, or CLASS/PERSON/IMAGE")
        return [(d.name, images(d)) for d in people]
    return [(None, images(folder))]
