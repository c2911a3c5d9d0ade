"""Faces seen through glimpses (Ba et al. 2016, section 4.3; docs/paper.md §3.3, Table 3).

The paper's Multi-PIE expressions cannot be downloaded freely; the stand-ins are real face
sets (`fwbench.data.faces`), chosen by `dataset`:

* `yale-expression`: Yale faces, 6 expressions (happy, normal, sad, sleepy, surprised, wink),
  15 people, 90 images. Split by person [C]: `test_frac` / `valid_frac` of the people (3 and
  3 of 15) give the test and validation faces, so test faces are always of unseen people.
* `yale-identity`: all 164 Yale photos (lighting, glasses, expressions), 15 classes.
* `olivetti`: the 400 Olivetti faces, 40 classes.
* `folder`: `faces_dir` holds one subfolder per class, of images (people unknown) or of one
  subfolder of images per person (`CLASS/PERSON/IMAGE`: a licensed Multi-PIE arranged by
  expression and person runs the paper's task so, split by person; docs/faces.md).

For identity labels (and folders without people) a person-wise split is impossible, so each
class is split within itself [C]: `test_frac` / `valid_frac` of its images (rounded; 2 and 2 of Olivetti's
10) go to test and validation.

Splits are folds (`fold_split`): with test_frac = 0.2, data_seed 0..4 is 5-fold
cross-validation, every person (or image) tested exactly once. With 10 people:

>>> folds = [fold_split(np.arange(10), 0.2, 0.2, data_seed) for data_seed in range(5)]
>>> {name: len(part) for name, part in folds[0].items()}
{'train': 6, 'valid': 2, 'test': 2}
>>> sorted(int(person) for fold in folds for person in fold["test"])
[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

Images are `size` x `size` greyscale (48 [S]) as floats in [0, 1], [N, 1, S, S]; glimpses scale
with the size (g = size / 4: 24 glimpses of 12 x 12 at 48).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fwbench.data.faces import FaceSet, load_folder, load_olivetti, load_yale
from fwbench.errors import FwbenchError
from fwbench.tasks.glimpses import GlimpseConfig, GlimpseTask, to_images
from fwbench.settings import setting
from fwbench.tasks.base import Split

DATASETS = ("yale-expression", "yale-identity", "olivetti", "folder")


@dataclasses.dataclass(frozen=True)
class FacesConfig(GlimpseConfig):
    dataset: str = setting("yale-expression", "face set and labels", choices=DATASETS,
                           paper="[C]")
    faces_dir: str = setting("", "directory of the face data, or of class subfolders for "
                             "'folder' (empty: $FWBENCH_FACES, then ../shared/data/faces)")
    size: int = setting(48, "image side after crop and resize (a multiple of 4)", low=8,
                        high=512, paper="[S]")
    crop: float = setting(0.0, "centred square crop as a fraction of the shorter side "
                          "(0: the set's default, 0.8 for Yale, 1.0 otherwise)", low=0.0,
                          high=1.0, paper="[C]")
    valid_frac: float = setting(0.2, "fraction of people (or of each class) for validation",
                                low=0.01, high=0.5, paper="[C]")
    test_frac: float = setting(0.2, "fraction of people (or of each class) for test",
                               low=0.01, high=0.5, paper="[C]")

    def validate(self) -> None:
        if self.size % 4:
            raise FwbenchError(f"invalid value {self.size} for size: expected a multiple of 4")
        if self.dataset == "folder" and not self.faces_dir:
            raise FwbenchError("dataset 'folder' needs --faces_dir DIR (one subfolder per class)")
        super().validate()


def fold_split(items: np.ndarray, valid_frac: float, test_frac: float, data_seed: int,
               salt: int = 0) -> dict[str, np.ndarray]:
    """Items into train / valid / test by folds, so data_seed 0..k-1 is k-fold cross-validation.

    The items are shuffled by (data_seed // k, salt), k = round(1 / test_frac), and cut into
    k folds; fold data_seed % k is the test set, the next round(valid_frac * n) items after it
    (cyclically) validate, the rest train [C].
    """
    k = max(1, round(1 / test_frac))
    perm = np.random.default_rng((data_seed // k, salt)).permutation(items)
    folds = np.array_split(perm, k)
    i = data_seed % k
    rest = np.concatenate(folds[i + 1:] + folds[:i])
    n_valid = round(valid_frac * len(items))
    return {"train": rest[n_valid:], "valid": rest[:n_valid], "test": folds[i]}


def split_by_group(groups: np.ndarray, valid_frac: float, test_frac: float,
                   data_seed: int) -> dict[str, np.ndarray]:
    """Indices of each split, whole groups (people) at a time: test people are unseen."""
    chosen = fold_split(np.unique(groups), valid_frac, test_frac, data_seed)
    return {k: np.flatnonzero(np.isin(groups, v)) for k, v in chosen.items()}


def split_within_groups(groups: np.ndarray, valid_frac: float, test_frac: float,
                        data_seed: int) -> dict[str, np.ndarray]:
    """Indices of each split, every group (class) divided in the same proportions."""
    out: dict[str, list] = {"train": [], "valid": [], "test": []}
    for g in np.unique(groups):
        parts = fold_split(np.flatnonzero(groups == g), valid_frac, test_frac, data_seed, int(g))
        for k, v in parts.items():
            out[k] += v.tolist()
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in out.items()}


class Faces(GlimpseTask):
    Config = FacesConfig
    summary = "faces through multi-level glimpses: Yale expressions, identities (Ba et al. Table 3)"
    learner_defaults = {"batch_size": 32, "max_steps": 3_000, "eval_every": 25, "patience": 20,
                        "log_every": 25}

    def __init__(self, cfg: FacesConfig):
        super().__init__(cfg)
        self._data: FaceSet | None = None

    @property
    def side(self) -> int:
        return self.cfg.size

    def data(self) -> FaceSet:
        """The whole face set (loaded once)."""
        if self._data is None:
            c = self.cfg
            if c.dataset.startswith("yale"):
                self._data = load_yale(c.faces_dir, c.dataset.split("-")[1], c.size, c.crop)
            elif c.dataset == "olivetti":
                self._data = load_olivetti(c.faces_dir, c.size, c.crop)
            else:
                self._data = load_folder(c.faces_dir, c.size, c.crop)
        return self._data

    @property
    def num_classes(self) -> int:
        return len(self.data().class_names)

    def class_name(self, k: int) -> str:
        return self.data().class_names[k]

    def splits(self, data_seed: int) -> dict[str, Split]:
        d, c = self.data(), self.cfg
        if c.dataset == "yale-expression" or (c.dataset == "folder" and d.people is not None):
            idx = split_by_group(d.people, c.valid_frac, c.test_frac, data_seed)
        else:
            idx = split_within_groups(d.labels, c.valid_frac, c.test_frac, data_seed)
        empty = [k for k, v in idx.items() if not len(v)]
        if empty:
            raise FwbenchError(f"{d.source}: the {empty[0]} split is empty with valid_frac "
                               f"{c.valid_frac} and test_frac {c.test_frac}; raise them or add "
                               "images")
        return {k: Split(to_images(d.images[v]), torch.as_tensor(d.labels[v], dtype=torch.long))
                for k, v in idx.items()}
