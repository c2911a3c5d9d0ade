"""What figures say: short stable names, distinct row styles, log axes only across decades,
symbols and units in labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwbench import names
from fwbench.report.build import MAX_KEY, figure_name
from fwbench.report.figstyle import log_if_decades, pyplot, style
from fwbench.report.plots import axis_label, curve_scale
from fwbench.report.spec import ReportSpec


def test_figure_names_are_short_stable_and_distinct():
    long = ", ".join(f"setting_{i}={i / 7:.5f}" for i in range(12))
    name = figure_name("retrieval", long)
    assert len(name) <= len("retrieval-") + MAX_KEY
    assert name == figure_name("retrieval", long)  # the same on every build
    assert name != figure_name("retrieval", long.replace("setting_11", "setting_12"))
    assert figure_name("retrieval", "max_steps=3000") == "retrieval-max_steps=3000"
    assert figure_name("faces", "") == "faces"


def test_row_styles_stay_distinct_past_the_palette():
    looks = [tuple(style(k).values()) for k in range(24)]
    assert len(set(looks)) == 24


@pytest.mark.parametrize("values,log", [([1.0, 80.0], False), ([0.1, 80.0], True),
                                        ([0.0, 0.01, 70.0], True), ([5.0], False)])
def test_log_axis_only_where_values_span_decades(values, log):
    fig, ax = pyplot().subplots()
    ax.set_ylabel("test error (%)")
    assert log_if_decades(ax, values) is log
    assert ax.get_yscale() == ("linear" if not log else "symlog" if 0.0 in values else "log")
    assert ("log scale" in ax.get_ylabel()) is log
    pyplot().close(fig)


def test_labels_use_symbols_and_the_tables_units():
    spec = ReportSpec(metric="test_error", scale=100)
    assert axis_label("valid/error", curve_scale("valid/error", spec)) == \
        "validation error (%)"
    assert axis_label("train/loss", curve_scale("train/loss", spec)) == "training loss"
    assert names.assigns([("lam", 0.9), ("eta", 0.5), ("S", 2)]) == "λ=0.9 η=0.5 S=2"
    assert names.shown(0.6734, 100) == "67.34%" and names.shown(0.5, 1) == "0.5"


def test_committed_figures_have_a_sane_size():
    """A bar reaching 0 on a log axis once drew to minus infinity, and the tight bounding box
    made a capacity figure 90,035 pixels tall: every committed figure stays page-sized."""
    from PIL import Image

    repo = Path(__file__).resolve().parent.parent
    pngs = sorted((repo / "evidence" / "report").glob("*/plots/*.png"))
    assert pngs
    sizes = {p.name: Image.open(p).size for p in pngs}
    assert all(w <= 3000 and h <= 3000 for w, h in sizes.values()), sizes
