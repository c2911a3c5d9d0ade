"""`fwbench show`: a PNG of one image beside the glimpse sequence a recurrent model reads."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Optional

import typer

from fwbench.commands._args import parse_extra


def image_tasks() -> list[str]:
    """Names of the registered tasks that provide images (and so glimpses)."""
    from fwbench.tasks import TASKS

    return [e.name for e in TASKS if "image" in e.load().provides]


def build_image_task(task: str, overrides: dict):
    """The task object with validated task settings; FwbenchError for unknown settings."""
    from fwbench.config import normalise_key
    from fwbench.errors import FwbenchError
    from fwbench.settings import build, fields_of
    from fwbench.tasks import TASKS

    entry = TASKS.entry(task)
    if task not in image_tasks():
        raise FwbenchError(f"task {task!r} has no images to show; choose one of: "
                           + ", ".join(image_tasks()))
    cls = entry.load()
    overrides = {normalise_key(k): v for k, v in overrides.items()}
    names = [f.name for f in fields_of(cls.Config)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise FwbenchError(f"unknown setting {unknown[0]!r} for task {task!r}; allowed: "
                           + ", ".join(names))
    return cls(build(cls.Config, overrides, entry.defaults))


def render(img, encoder, label: str) -> bytes:
    """PNG bytes: the image with the glimpse regions outlined, then each glimpse in order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from fwbench.tasks.glimpses import span

    seq = encoder(img[None])[0]  # [T, D]
    g, T, side = encoder.g, len(encoder.glimpses), encoder.side
    cols = 6 if T % 6 == 0 else 4
    rows = -(-T // cols)
    fig = plt.figure(figsize=(3 + 1.1 * cols, max(3.0, 1.2 * rows)))
    grid = fig.add_gridspec(rows, cols + 3)
    ax = fig.add_subplot(grid[:, :3])
    ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"image ({label})")
    for s in encoder.glimpses:
        w = span(s, side)
        ax.add_patch(Rectangle((s.col - 0.5, s.row - 0.5), w, w, fill=False, lw=1 + s.level,
                               ec=("tab:orange", "tab:cyan", "tab:red")[s.level % 3]))
    ax.axis("off")
    for t, s in enumerate(encoder.glimpses):
        a = fig.add_subplot(grid[t // cols, 3 + t % cols])
        a.imshow(seq[t, :g * g].reshape(g, g).numpy(), cmap="gray", vmin=0, vmax=1)
        a.set_title(f"{t + 1}: L{s.level} ({s.row},{s.col})", fontsize=7)
        a.axis("off")
    fig.suptitle(f"{encoder.name} glimpses: {T} of {g}x{g}, each given with its level and position"
                 "\nL0 full resolution, L1 averaged 2x2, L2 averaged 4x4; (row,col) = top-left "
                 "pixel of the region", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def show(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="an image task (see `fwbench list tasks`)")] = "mnist",
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("glimpses.png"),
    index: Annotated[int, typer.Option(help="which image of the split", min=0)] = 0,
    split: Annotated[str, typer.Option(help="train, valid or test")] = "test",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="NAME=VALUE setting")] = None,
) -> None:
    """Write a PNG of one image of TASK beside its glimpse sequence (what a model reads)."""
    from fwbench.errors import FwbenchError
    from fwbench.records import atomic_write

    t = build_image_task(task, parse_extra(ctx.args, set_))
    if split not in ("train", "valid", "test"):
        raise FwbenchError(f"invalid split {split!r}: expected train, valid or test")
    if out.suffix.lower() != ".png":
        raise FwbenchError(f"invalid --out {out}: expected a file name ending in .png")
    data = t.splits(0)[split]
    if index >= len(data):
        raise FwbenchError(f"invalid --index {index}: the {split} split holds {len(data)} images")
    encoder, _ = t.encoder("sequence")
    png = render(data.x[index], encoder, f"{split} #{index}, {t.class_name(int(data.y[index]))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, png)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(show)
