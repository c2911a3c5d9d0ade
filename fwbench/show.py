"""What `fwbench show` draws: one image of an image task beside the glimpse sequence a recurrent
model reads from it, as a PNG (matplotlib, Agg)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fwbench.errors import FwbenchError
from fwbench.records import atomic_write

SPLITS = ("train", "valid", "test")


def image_tasks() -> list[str]:
    """Names of the registered tasks that provide images (and so glimpses)."""
    from fwbench.tasks import TASKS

    return [e.name for e in TASKS if "image" in e.load().provides]


def image_task(task: str, overrides: dict[str, Any] | None = None):
    """The task object with validated task settings; FwbenchError for unknown settings."""
    from fwbench.config import task_settings
    from fwbench.tasks import TASKS

    entry = TASKS.entry(task)  # FwbenchError for an unknown task
    if task not in image_tasks():
        raise FwbenchError(f"task {task!r} has no images to show; choose one of: "
                           + ", ".join(image_tasks()))
    return entry.load()(task_settings(task, overrides))


def show_glimpses(task: str, overrides: dict[str, Any] | None = None, out: Path = Path(
        "glimpses.png"), index: int = 0, split: str = "test") -> Path:
    """Write the PNG of image `index` of `split` of `task` beside its glimpses; return its path."""
    t = image_task(task, overrides)
    if split not in SPLITS:
        raise FwbenchError(f"invalid split {split!r}: expected train, valid or test")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise FwbenchError(f"invalid --out {out}: expected a file name ending in .png")
    data = t.splits(0)[split]
    if not 0 <= index < len(data):
        raise FwbenchError(f"invalid --index {index}: the {split} split holds {len(data)} images")
    encoder, _ = t.encoder("sequence")
    png = render(data.x[index], encoder, f"{split} #{index}, {t.class_name(int(data.y[index]))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, png)
    return out


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
