"""Associative retrieval (Ba et al. 2016, section 4.1; docs/paper.md §3.1).

K (key, value) pairs, then `??`, then one of the K keys; the target is that key's value. Keys
are letters drawn without replacement, values digits drawn with replacement [S]. With K = 4:

    c9k8j3f1??c -> 9        j0a5s5z2??a -> 5

Tokens: letters a..z are 0..25, digits 0..9 are 26..35, `?` is 36 (37 in all). Inputs are
token ids [N, 2K+3], targets the digit 0..9. Each split is drawn from its own stream seeded by
(data_seed, split), so a split never changes when another split's size does. `eval_K` adds test
sets at other numbers of pairs (same vocabulary, longer or shorter strings) scored with the
best checkpoint, for length generalisation.

Harder settings, for capacity experiments (the defaults are the paper's task, and give the
very same data): `n_keys` distinct keys and `n_values` distinct values (token ids: keys
0..n_keys-1, values n_keys..n_keys+n_values-1, then `?`), and `queries` = Q distinct keys
asked after the `??` (inputs [N, 2K+2+Q], targets [N, Q]; the network reads its outputs at
the last Q positions, `read_positions`). Error is then counted per query [C].

>>> task = Retrieval(RetrievalConfig(n_train=3, n_valid=1, n_test=1))
>>> x, y = task.generate(2, seed=(0, 0))
>>> decode(x[0]), int(y[0])
('l7d8u0n0??n', 0)
>>> hard = Retrieval(RetrievalConfig(K=3, n_keys=100, n_values=20, queries=2))
>>> x, y = hard.generate(1, seed=(0, 0))
>>> decode(x[0], 100, 20), y[0].tolist()
('k11 v4 k92 v9 k3 v6 ? ? k3 k11', [6, 4])
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
KEY_BLOCK = 8192  # rows per block when drawing keys: bounds memory for large n_keys


def decode(tokens, n_keys: int = N_LETTERS, n_values: int = N_DIGITS) -> str:
    """Token ids back to the string form, e.g. 'c9k8j3f1??c' (space-separated 'k12 v3 ?' when
    the vocabulary is larger than letters and digits)."""
    qmark, ids = n_keys + n_values, np.asarray(tokens).tolist()
    if n_keys <= N_LETTERS and n_values <= N_DIGITS:
        return "".join(LETTERS[t] if t < n_keys else "?" if t == qmark else str(t - n_keys)
                       for t in ids)
    return " ".join(f"k{t}" if t < n_keys else "?" if t == qmark else f"v{t - n_keys}"
                    for t in ids)


def encode(text: str) -> torch.Tensor:
    """The string form to token ids (the paper's vocabulary)."""
    ids = [LETTERS.index(c) if c in LETTERS else QMARK if c == "?" else N_LETTERS + int(c)
           for c in text]
    return torch.tensor(ids, dtype=torch.long)


@dataclasses.dataclass(frozen=True)
class RetrievalConfig(TaskConfig):
    K: int = setting(4, "key-value pairs per string (at most n_keys)", low=1, paper="[R]")
    n_train: int = setting(100_000, "training strings", low=1, paper="[P]")
    n_valid: int = setting(10_000, "validation strings", low=1, paper="[P]")
    n_test: int = setting(20_000, "test strings", low=1, paper="[P]")
    eval_K: tuple[int, ...] = setting((), "extra test sets at these K (comma-separated)", low=1)
    embed: int = setting(100, "token embedding size", low=1, paper="[S]")
    n_keys: int = setting(N_LETTERS, "distinct keys (26: the letters)", low=1, paper="[S]")
    n_values: int = setting(N_DIGITS, "distinct values (10: the digits)", low=2, paper="[S]")
    queries: int = setting(1, "distinct keys queried after '??' (at most K and every eval_K)",
                           low=1, paper="[S]")

    def validate(self):
        for name, k in [("K", self.K)] + [("eval_K", k) for k in self.eval_K]:
            if not self.queries <= k <= self.n_keys:
                raise FwbenchError(f"invalid value {k} for {name}: expected an integer in "
                                   f"[queries={self.queries}, n_keys={self.n_keys}]")


class Retrieval(SupervisedTask):
    Config = RetrievalConfig
    summary = "associative retrieval strings: 'c9k8j3f1??c' -> 9 (Ba et al. 2016, Table 1)"

    @property
    def num_classes(self) -> int:
        return self.cfg.n_values

    @property
    def vocab(self) -> int:
        return self.cfg.n_keys + self.cfg.n_values + 1

    @property
    def read_positions(self) -> tuple[int, ...] | None:
        """Output positions the classifier reads (None: the last one, target shape [N])."""
        return None if self.cfg.queries == 1 else tuple(range(-self.cfg.queries, 0))

    def _keys(self, rng, n: int, K: int) -> np.ndarray:
        """K distinct keys per row [n, K]: ranks of uniform draws, in blocks of rows."""
        blocks = [np.argsort(rng.random((min(KEY_BLOCK, n - i), self.cfg.n_keys)), axis=1)[:, :K]
                  for i in range(0, n, KEY_BLOCK)]
        return np.concatenate(blocks) if blocks else np.empty((0, K), dtype=np.int64)

    def generate(self, n: int, seed, K: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n strings with K pairs from the stream `seed`: tokens [n, 2K+2+Q], targets [n]
        (Q = 1) or [n, Q]."""
        K = self.cfg.K if K is None else K
        Q, n_keys = self.cfg.queries, self.cfg.n_keys
        if not Q <= K <= n_keys:
            raise FwbenchError(f"invalid K {K}: expected an integer in [{Q}, {n_keys}]")
        rng = np.random.default_rng(seed)
        keys = self._keys(rng, n, K)  # without replacement
        values = rng.integers(0, self.cfg.n_values, size=(n, K))
        if Q == 1:
            which = rng.integers(0, K, size=n)[:, None]
        else:  # Q distinct pairs per string
            which = np.argsort(rng.random((n, K)), axis=1)[:, :Q]
        rows = np.arange(n)[:, None]
        x = np.empty((n, 2 * K + 2 + Q), dtype=np.int64)
        x[:, 0:2 * K:2] = keys
        x[:, 1:2 * K:2] = n_keys + values
        x[:, 2 * K:2 * K + 2] = n_keys + self.cfg.n_values
        x[:, 2 * K + 2:] = keys[rows, which]
        y = values[rows, which]  # [n, Q]
        return torch.from_numpy(x), torch.from_numpy(y[:, 0] if Q == 1 else y)

    def splits(self, data_seed: int) -> dict[str, Split]:
        sizes = {"train": self.cfg.n_train, "valid": self.cfg.n_valid, "test": self.cfg.n_test}
        return {name: Split(*self.generate(n, seed=(data_seed, i)))
                for i, (name, n) in enumerate(sizes.items())}

    def extra_tests(self, data_seed: int) -> dict[str, Split]:
        return {f"test_K{k}": Split(*self.generate(self.cfg.n_test, seed=(data_seed, 2, k), K=k))
                for k in self.cfg.eval_K}

    def encoder(self, kind: str) -> tuple[nn.Module, int]:
        return nn.Embedding(self.vocab, self.cfg.embed), self.cfg.embed

    # query_value: each queried key's value at the step that asks for it;
    # first_value: the first pair's value at every step after it was shown, how long the
    # oldest pair is kept
    probes = ("query_value", "first_value")

    def probe_targets(self, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per string and step [N, T], the value index to decode there (-1: none)."""
        out = torch.full(x.shape, -1, dtype=torch.long)
        if name == "query_value":
            answers = y[:, None] if y.dim() == 1 else y  # [N, Q]: the last Q steps ask
            out[:, -answers.shape[1]:] = answers
        else:  # first_value: token 1 is the first pair's value, n_keys + value
            out[:, 1:] = (x[:, 1] - self.cfg.n_keys)[:, None]
        return out
