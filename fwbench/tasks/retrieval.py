"""Associative retrieval (Ba et al. 2016, section 4.1; PAPER.md 3.1).

K (key, value) pairs, then `??`, then one of the K keys; the target is that key's value. Keys
are letters drawn without replacement, values digits drawn with replacement [S]. With K = 4:

    c9k8j3f1??c -> 9        j0a5s5z2??a -> 5

Tokens: letters a..z are 0..25, digits 0..9 are 26..35, `?` is 36 (37 in all). Inputs are
token ids [N, 2K+3], targets the digit 0..9. Each split is drawn from its own stream seeded by
(data_seed, split), so a split never changes when another split's size does. `eval_K` adds test
sets at other numbers of pairs (same vocabulary, longer or shorter strings) scored with the
best checkpoint, for length generalisation.

>>> task = Retrieval(RetrievalConfig(n_train=3, n_valid=1, n_test=1))
>>> x, y = task.generate(2, seed=(0, 0))
>>> decode(x[0]), int(y[0])
('l6d9u0n4??l', 6)
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np
import torch
from torch import nn

from fwbench.errors import FwbenchError
from fwbench.settings import setting
from fwbench.tasks.base import Split, SupervisedTask, TaskConfig

LETTERS = string.ascii_lowercase
N_LETTERS, N_DIGITS = 26, 10
QMARK = N_LETTERS + N_DIGITS
VOCAB = QMARK + 1


def decode(tokens) -> str:
    """Token ids back to the string form, e.g. 'c9k8j3f1??c'."""
    chars = []
    for t in np.asarray(tokens).tolist():
        chars.append(LETTERS[t] if t < N_LETTERS else "?" if t == QMARK else str(t - N_LETTERS))
    return "".join(chars)


def encode(text: str) -> torch.Tensor:
    """The string form to token ids."""
    ids = [LETTERS.index(c) if c in LETTERS else QMARK if c == "?" else N_LETTERS + int(c)
           for c in text]
    return torch.tensor(ids, dtype=torch.long)


@dataclasses.dataclass(frozen=True)
class RetrievalConfig(TaskConfig):
    K: int = setting(4, "key-value pairs per string", low=1, high=26, paper="[R]")
    n_train: int = setting(100_000, "training strings", low=1, paper="[P]")
    n_valid: int = setting(10_000, "validation strings", low=1, paper="[P]")
    n_test: int = setting(20_000, "test strings", low=1, paper="[P]")
    eval_K: tuple[int, ...] = setting((), "extra test sets at these K (comma-separated)",
                                      low=1, high=26)
    embed: int = setting(100, "token embedding size", low=1, paper="[S]")


class Retrieval(SupervisedTask):
    Config = RetrievalConfig
    summary = "associative retrieval strings: 'c9k8j3f1??c' -> 9 (Ba et al. 2016, Table 1)"

    @property
    def num_classes(self) -> int:
        return N_DIGITS

    def generate(self, n: int, seed, K: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n strings with K pairs from the stream `seed`: tokens [n, 2K+3], targets [n]."""
        K = self.cfg.K if K is None else K
        if not 1 <= K <= N_LETTERS:
            raise FwbenchError(f"invalid K {K}: expected an integer in [1, {N_LETTERS}]")
        rng = np.random.default_rng(seed)
        keys = np.argsort(rng.random((n, N_LETTERS)), axis=1)[:, :K]  # without replacement
        values = rng.integers(0, N_DIGITS, size=(n, K))
        which = rng.integers(0, K, size=n)
        x = np.empty((n, 2 * K + 3), dtype=np.int64)
        x[:, 0:2 * K:2] = keys
        x[:, 1:2 * K:2] = N_LETTERS + values
        x[:, 2 * K:2 * K + 2] = QMARK
        x[:, -1] = keys[np.arange(n), which]
        y = values[np.arange(n), which]
        return torch.from_numpy(x), torch.from_numpy(y)

    def splits(self, data_seed: int) -> dict[str, Split]:
        sizes = {"train": self.cfg.n_train, "valid": self.cfg.n_valid, "test": self.cfg.n_test}
        return {name: Split(*self.generate(n, seed=(data_seed, i)))
                for i, (name, n) in enumerate(sizes.items())}

    def extra_tests(self, data_seed: int) -> dict[str, Split]:
        return {f"test_K{k}": Split(*self.generate(self.cfg.n_test, seed=(data_seed, 2, k), K=k))
                for k in self.cfg.eval_K}

    def encoder(self, kind: str) -> tuple[nn.Module, int]:
        return nn.Embedding(VOCAB, self.cfg.embed), self.cfg.embed
