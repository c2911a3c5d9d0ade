"""Fixed multi-level glimpse sequences over square images (docs/paper.md §3.2, §3.3).

A glimpse is a g x g view, g = side / 4, of a square region of the image at a level l: the
region is g * 2^l pixels wide and is average-pooled by 2^l (level 0: full resolution). Each
glimpse reaches the model as one vector: its g * g pixels, then a one-hot of its level, then
its position as a 4 x 4 multi-hot of the g x g cells of the image it covers [C].

Schemes (the `glimpses` setting of image tasks):

* `quadrants` (default, docs/paper.md §3.2 [C]): for each quadrant in turn (top-left, top-right,
  bottom-left, bottom-right), the coarse glimpse of the quadrant (level 1), its four fine
  sub-patches at full resolution (level 0, row-major), then the coarse glimpse again:
  4 x 6 = 24 glimpses of 7 x 7 for MNIST's 28 x 28, of 12 x 12 for 48 x 48 faces.
* `pyramid`: the whole image at level 2, then per quadrant its coarse glimpse and four fine
  ones (21 glimpses).
* `fine`: the 16 full-resolution patches in raster order (no multi-level view; an ablation).

>>> [(s.level, s.row, s.col) for s in scheme("quadrants", 28)[:6]]
[(1, 0, 0), (0, 0, 0), (0, 0, 7), (0, 7, 0), (0, 7, 7), (1, 0, 0)]

Levels (the `levels` setting): `flat` feeds the glimpses as one plain sequence; `multilevel` is
the paper's multi-level model (docs/paper.md §3.2, its Figure 3; how the hidden state is handled
is our convention [C]). The sequence then comes with a mark per step, DOWN (1) where a finer
level starts and UP (2) where the coarser level resumes; the models set their working state
aside at DOWN, keeping their memory, and restore it at UP (`fwbench.models.base`). A scheme must
start and end at its coarsest level and change level one step at a time: `quadrants` does,
`pyramid` ends on a fine glimpse, `fine` has one level. Per quadrant, the coarse glimpse, the
fine ones read afresh, then the coarse glimpse with the state restored:

>>> level_marks(scheme("quadrants", 28))[:12]
(0, 1, 0, 0, 0, 2, 0, 1, 0, 0, 0, 2)
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fwbench.errors import FwbenchError
from fwbench.models.base import DOWN, UP, RecurrentCore
from fwbench.settings import setting
from fwbench.tasks.base import SupervisedTask, TaskConfig

GRID = 4  # the image is 4 x 4 cells of g x g pixels


@dataclasses.dataclass(frozen=True)
class Glimpse:
    """A glimpse: pooling level and top-left corner (pixels) of the region it covers."""

    level: int
    row: int
    col: int


def _quadrant(r: int, c: int, g: int, repeat: bool) -> list[Glimpse]:
    """Coarse view of the quadrant at (r, c), its four fine patches, the coarse view again."""
    fine = [Glimpse(0, r + i * g, c + j * g) for i in range(2) for j in range(2)]
    coarse = Glimpse(1, r, c)
    return [coarse, *fine, coarse] if repeat else [coarse, *fine]


def _corners(g: int) -> list[tuple[int, int]]:
    return [(0, 0), (0, 2 * g), (2 * g, 0), (2 * g, 2 * g)]


def _quadrants(g: int) -> list[Glimpse]:
    return [s for r, c in _corners(g) for s in _quadrant(r, c, g, repeat=True)]


def _pyramid(g: int) -> list[Glimpse]:
    return [Glimpse(2, 0, 0)] + [s for r, c in _corners(g) for s in _quadrant(r, c, g, False)]


def _fine(g: int) -> list[Glimpse]:
    return [Glimpse(0, i * g, j * g) for i in range(GRID) for j in range(GRID)]


SCHEMES = {"quadrants": _quadrants, "pyramid": _pyramid, "fine": _fine}


def scheme(name: str, side: int) -> list[Glimpse]:
    """The glimpses of scheme `name` over a side x side image."""
    if name not in SCHEMES:
        raise FwbenchError(f"unknown glimpse scheme {name!r}; choose one of: {', '.join(SCHEMES)}")
    if side < GRID or side % GRID:
        raise FwbenchError(f"glimpses need an image side divisible by {GRID}, got {side}")
    return SCHEMES[name](side // GRID)


LEVELS = ("flat", "multilevel")


def level_marks(glimpses: list[Glimpse]) -> tuple[int, ...]:
    """Per-step level marks of a multi-level reading: DOWN (1) where a finer level starts, UP
    (2) where the coarser one resumes, 0 elsewhere; FwbenchError for a scheme without levels."""
    lv = [s.level for s in glimpses]
    if len(set(lv)) < 2:
        raise FwbenchError("levels=multilevel needs a glimpse scheme with two levels or more; "
                           "this one has one (use glimpses=quadrants)")
    if lv[0] != max(lv) or lv[-1] != max(lv):
        raise FwbenchError("levels=multilevel needs a glimpse scheme that starts and ends at its "
                           "coarsest level (use glimpses=quadrants)")
    if any(abs(b - a) > 1 for a, b in zip(lv, lv[1:])):
        raise FwbenchError("levels=multilevel needs a glimpse scheme that changes level one step "
                           "at a time (use glimpses=quadrants)")
    return (0,) + tuple(DOWN if b < a else UP if b > a else 0 for a, b in zip(lv, lv[1:]))


def quadrant_run_marks() -> tuple[int, ...]:
    """The level marks of one quadrant's run of the `quadrants` scheme (coarse, four fine,
    coarse again): the unit that multi-level readings repeat."""
    return level_marks(_quadrant(0, 0, 1, repeat=True))


def check_levels(glimpses: str, levels: str) -> None:
    """FwbenchError unless scheme `glimpses` can be read at `levels` (before anything runs)."""
    if levels != "flat":
        level_marks(scheme(glimpses, GRID))  # the levels do not depend on the image's side


def glimpse_size(side: int) -> int:
    """Pixels along each side of a glimpse."""
    return side // GRID


def span(s: Glimpse, side: int) -> int:
    """Pixels along each side of the region a glimpse covers."""
    return glimpse_size(side) * 2 ** s.level


def codes(glimpses: list[Glimpse], side: int) -> torch.Tensor:
    """Level one-hot and 4 x 4 position multi-hot of each glimpse: [T, levels + 16]."""
    g, levels = glimpse_size(side), max(s.level for s in glimpses) + 1
    out = torch.zeros(len(glimpses), levels + GRID * GRID)
    for t, s in enumerate(glimpses):
        out[t, s.level] = 1.0
        n = 2 ** s.level  # cells covered along each side
        for i in range(s.row // g, s.row // g + n):
            for j in range(s.col // g, s.col // g + n):
                out[t, levels + i * GRID + j] = 1.0
    return out


class GlimpseEncoder(nn.Module):
    """Images [B, 1, side, side] -> glimpse sequences [B, T, g*g + levels + 16]; no parameters.

    Vectorised: one average pooling per level and one gather of all that level's patches.
    """

    def __init__(self, name: str, side: int):
        super().__init__()
        self.name, self.side = name, side
        self.glimpses = scheme(name, side)
        self.g = glimpse_size(side)
        ar = torch.arange(self.g)
        self.levels = sorted({s.level for s in self.glimpses})
        grouped = []
        for lv in self.levels:
            idx = [t for t, s in enumerate(self.glimpses) if s.level == lv]
            grouped += idx
            f = 2 ** lv  # region origin in the pooled image is (row / f, col / f)
            rows = torch.tensor([self.glimpses[t].row // f for t in idx])[:, None] + ar  # [T_l, g]
            cols = torch.tensor([self.glimpses[t].col // f for t in idx])[:, None] + ar  # [T_l, g]
            self.register_buffer(f"rows{lv}", rows, persistent=False)
            self.register_buffer(f"cols{lv}", cols, persistent=False)
        # position of each scheme step in the level-grouped concatenation
        order = torch.argsort(torch.tensor(grouped))
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("codes", codes(self.glimpses, side), persistent=False)

    @property
    def input_size(self) -> int:
        return self.g * self.g + self.codes.shape[1]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.dim() != 4 or img.shape[1:] != (1, self.side, self.side):
            raise FwbenchError(f"glimpse encoder expects images [B, 1, {self.side}, {self.side}], "
                               f"got {list(img.shape)}")
        parts = []
        for lv in self.levels:
            pooled = F.avg_pool2d(img, 2 ** lv) if lv else img  # [B, 1, side/2^l, side/2^l]
            rows, cols = getattr(self, f"rows{lv}"), getattr(self, f"cols{lv}")
            patches = pooled[:, 0, rows[:, :, None], cols[:, None, :]]  # [B, T_l, g, g]
            parts.append(patches.flatten(2))  # [B, T_l, g*g]
        pixels = torch.cat(parts, dim=1)[:, self.order]  # [B, T, g*g] in scheme order
        code = self.codes.to(pixels.dtype).expand(img.shape[0], -1, -1)  # [B, T, levels+16]
        return torch.cat([pixels, code], dim=-1)


def glimpses_reference(img: torch.Tensor, name: str) -> torch.Tensor:
    """Slow, obviously correct pixels of every glimpse: [B, T, g*g] (parity reference)."""
    side = img.shape[-1]
    g, out = glimpse_size(side), []
    for s in scheme(name, side):
        f, w = 2 ** s.level, span(s, side)
        region = img[:, 0, s.row:s.row + w, s.col:s.col + w]  # [B, w, w]
        pooled = region.reshape(-1, g, f, g, f).mean(dim=(2, 4))  # f x f blocks -> [B, g, g]
        out.append(pooled.reshape(-1, g * g))
    return torch.stack(out, dim=1)


def to_images(pixels) -> torch.Tensor:
    """uint8 images [N, H, W] -> float images in [0, 1], [N, 1, H, W]."""
    return torch.as_tensor(pixels).float().div_(255.0).unsqueeze(1)


@dataclasses.dataclass(frozen=True)
class GlimpseConfig(TaskConfig):
    """Settings of every task read through glimpses (its own settings follow these)."""

    glimpses: str = setting("quadrants", "glimpse scheme (see fwbench.tasks.glimpses)",
                            choices=tuple(SCHEMES), paper="[C]")
    levels: str = setting("flat", "glimpses as one flat sequence, or multilevel: the working "
                          "state set aside for each run of finer glimpses (fwbench.tasks.glimpses)",
                          choices=LEVELS, paper="[C]", added=True)
    encoder_units: int = setting(0, "ReLU units of a glimpse encoder layer before the model, the "
                                 "same for every model (0: none)", low=0, high=4096, paper="[C]",
                                 added=True)

    def validate(self) -> None:
        check_levels(self.glimpses, self.levels)


class GlimpseTask(SupervisedTask):
    """An image task: the whole image for image models, a glimpse sequence for the others."""

    provides = ("sequence", "image")

    @property
    def side(self) -> int:
        """Side of the (square) images, in pixels."""
        raise NotImplementedError

    def class_name(self, k: int) -> str:
        """A readable name of class k."""
        return f"class {k}"

    def encoder(self, kind: str) -> tuple[nn.Module, int]:
        if kind == "image":
            return nn.Identity(), 1  # one grey channel
        if kind == "sequence":
            enc = GlimpseEncoder(self.cfg.glimpses, self.side)
            units = self.cfg.encoder_units
            if not units:
                return enc, enc.input_size
            # one ReLU layer on each glimpse before the model, the same for every model [C]
            return nn.Sequential(enc, nn.Linear(enc.input_size, units), nn.ReLU()), units
        raise FwbenchError(f"image tasks provide image or sequence inputs, not {kind!r}")

    def marks(self) -> tuple[int, ...] | None:
        if self.cfg.levels == "flat":
            return None
        return level_marks(scheme(self.cfg.glimpses, self.side))

    @classmethod
    def check_model(cls, cfg, model_cls: type) -> None:
        if cfg.levels == "flat":
            return
        if not issubclass(model_cls, RecurrentCore):
            raise FwbenchError(f"levels={cfg.levels} marks glimpse sequences; model "
                               f"{model_cls.__name__} reads whole images (use levels=flat)")
        if model_cls.memory is None:
            raise FwbenchError(f"model {model_cls.__name__} does not say which of its state is "
                               "memory (RecurrentCore.memory), so it cannot take "
                               f"levels={cfg.levels}")
