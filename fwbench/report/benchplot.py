"""Figures of `fwbench bench` results, from bench.csv alone (no torch): training speed-up over
torch's nn.LSTM and nn.RNN(relu) per hidden size or, when several sequence lengths were
measured, time and memory of a training step against T (log-log)."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from fwbench.bench.table import REFERENCES, Row, read_csv
from fwbench.records import atomic_write
from fwbench.report.figstyle import style


def plot_bench(csv_path: Path, out_dir: Path) -> list[Path]:
    """Draw the figures of one bench.csv into `out_dir`; return the files written."""
    rows = read_csv(Path(csv_path))
    plt = _pyplot()
    written: list[Path] = []
    lengths = sorted({r.seq_len for r in rows})
    if len(lengths) > 1:  # a scaling run: one figure against T
        return [_save(plt, _scaling(plt, rows), Path(out_dir) / "bench_scaling")]
    group = [r for r in rows if r.metric == "train_seq_per_s"]
    if any(r.model not in REFERENCES for r in group):
        written.append(_save(plt, _speedups(plt, group, lengths[0]),
                             Path(out_dir) / f"bench_speedup_T{lengths[0]}"))
    return written


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(r: Row) -> str:
    return r.model if r.S is None else f"{r.model} S={r.S}"


def _speedups(plt, rows: list[Row], T: int):
    """Bars: training throughput over nn.LSTM (left) and nn.RNN (right), per hidden size."""
    hidden = sorted({r.hidden for r in rows})
    subjects = list(dict.fromkeys(_label(r) for r in rows if r.model not in REFERENCES))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    width = 0.8 / max(len(subjects), 1)
    for ax, col, ref in zip(axes, ("vs_lstm", "vs_rnn"), ("nn.LSTM", "nn.RNN(relu)")):
        for i, name in enumerate(subjects):
            vals = {r.hidden: getattr(r, col) for r in rows if _label(r) == name}
            xs = [k + (i - (len(subjects) - 1) / 2) * width for k in range(len(hidden))]
            ax.bar(xs, [vals.get(h) or 0 for h in hidden], width, label=name,
                   color=style(i)["color"], hatch=("", "//", "..", "xx")[(i // 8) % 4])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(hidden)), [str(h) for h in hidden])
        ax.set_xlabel("hidden units")
        ax.set_ylabel(f"training speed-up over {ref}")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"training throughput relative to torch, T = {T}, batch {rows[0].batch}")
    fig.tight_layout()
    return fig


def _scaling(plt, rows: list[Row]):
    """Log-log: ms per training step and MB saved for backward against sequence length."""
    series: dict[tuple, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.metric in ("train_seq_per_s", "saved_MB"):
            v = 1e3 * r.batch / r.value if r.metric == "train_seq_per_s" else r.value
            series[(_label(r), r.hidden)][r.seq_len][r.metric] = v
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, ylabel in zip(axes, ("train_seq_per_s", "saved_MB"),
                                  ("ms per training step", "MB saved for backward")):
        for k, ((name, H), by_T) in enumerate(series.items()):
            pts = sorted((T, m[metric]) for T, m in by_T.items() if metric in m)
            if pts:  # colour, line style and marker: distinct past the palette's 8 colours
                ax.plot(*zip(*pts), label=f"{name} H={H}", **style(k))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _save(plt, fig, stem: Path) -> Path:
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    path = stem.parent / f"{stem.name}.png"
    atomic_write(path, buf.getvalue())
    return path
