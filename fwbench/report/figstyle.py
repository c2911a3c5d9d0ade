"""What every figure shares: matplotlib set up to draw the same bytes on every build, a palette
a colour-blind reader can tell apart past eight rows, legends in curve order beside the axes,
and a log axis where values span decades.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from fwbench.records import atomic_write

# Okabe & Ito (2008): eight colours distinct for the common colour-vision deficiencies; past
# eight rows the line style and the marker change too, so no two rows look alike
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#000000")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DECADES = 100  # max / min of the positive values beyond which an axis is logarithmic


def pyplot():
    """matplotlib.pyplot on the Agg backend, with SVG ids fixed so builds are byte-identical."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "fwbench"  # the same SVG ids on every run
    import matplotlib.pyplot as plt

    return plt


def style(k: int) -> dict:
    """Colour, line style and marker of the k-th row: distinct for any k below 8 x 4 x 8."""
    n = len(OKABE_ITO)
    return {"color": OKABE_ITO[k % n], "linestyle": LINESTYLES[(k // n) % len(LINESTYLES)],
            "marker": MARKERS[(k // n + k) % len(MARKERS)]}


def save(fig, stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.svg (atomically); return their paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
        path = stem.parent / f"{stem.name}.{fmt}"  # a stem may hold dots (lr=0.001)
        atomic_write(path, buf.getvalue())
        paths.append(path)
    pyplot().close(fig)
    return paths


def log_if_decades(ax, values, axis: str = "y") -> bool:
    """Make `axis` logarithmic where the positive values span more than DECADES (near-zero
    errors apart on it); the label then says so. Return whether it did."""
    finite = np.asarray([x for x in np.ravel(values) if np.isfinite(x)], dtype=float)
    v = finite[finite > 0]
    if len(v) < 2 or v.max() / v.min() <= DECADES:
        return False
    label = getattr(ax, f"get_{axis}label")()
    # an unlabelled panel (beside a labelled one) says only its scale
    lead = f"{label}, log scale" if label else "log scale"
    if (finite <= 0).any():  # zeros stay visible: linear up to the smallest positive value
        getattr(ax, f"set_{axis}scale")("symlog", linthresh=float(v.min()))
        getattr(ax, f"set_{axis}label")(f"{lead} (linear below {v.min():.2g})")
    else:
        getattr(ax, f"set_{axis}scale")("log")
        getattr(ax, f"set_{axis}label")(lead)
    return True


def legend_beside(fig_or_ax, handles: list, labels: list[str], order: list[float],
                  descending: bool = True, title: str | None = None) -> None:
    """A legend outside the axes on the right, its entries in the order the curves end, top
    to bottom (`order`: each entry's last value; NaN last)."""
    if not handles:
        return
    key = [(np.isnan(v), -v if descending else v) for v in np.asarray(order, dtype=float)]
    idx = sorted(range(len(handles)), key=lambda i: key[i])
    fig_or_ax.legend([handles[i] for i in idx], [labels[i] for i in idx], fontsize=7,
                     title=title, title_fontsize=7, loc="upper left",
                     bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
