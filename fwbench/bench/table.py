"""Bench results as tidy rows: CSV on disk, a wide Markdown table and a rich table (no torch)."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

from fwbench.markdown import table as markdown_table
from fwbench.records import atomic_write

LSTM_REF, RNN_REF = "torch-lstm", "torch-rnn"  # torch's nn.LSTM and nn.RNN(relu)
REFERENCES = (LSTM_REF, RNN_REF)
# metric -> (unit, +1 higher is faster | -1 a time, lower is faster | 0 a size)
METRICS = {
    "train_seq_per_s": ("seq/s", 1), "infer_seq_per_s": ("seq/s", 1), "step_ms": ("ms", -1),
    "saved_MB": ("MB", 0), "peak_MB": ("MB", 0), "params": ("", 0), "state_floats": ("floats", 0),
}
COLUMNS = ("device", "clock", "batch", "seq_len", "input_size", "hidden", "model", "S", "impl",
           "metric", "value", "unit", "vs_lstm", "vs_rnn", "repeats")
# wide-table columns: (heading, metric, what) with what = value, vs_lstm or vs_rnn
WIDE = (("train seq/s", "train_seq_per_s", "value"), ("train ×LSTM", "train_seq_per_s", "vs_lstm"),
        ("train ×RNN", "train_seq_per_s", "vs_rnn"), ("infer seq/s", "infer_seq_per_s", "value"),
        ("infer ×LSTM", "infer_seq_per_s", "vs_lstm"), ("infer ×RNN", "infer_seq_per_s", "vs_rnn"),
        ("step ms", "step_ms", "value"), ("step ×LSTM", "step_ms", "vs_lstm"),
        ("saved MB", "saved_MB", "value"), ("saved ×LSTM", "saved_MB", "vs_lstm"),
        ("peak MB", "peak_MB", "value"), ("params", "params", "value"),
        ("state", "state_floats", "value"))


@dataclasses.dataclass(frozen=True)
class Row:
    device: str
    clock: str
    batch: int
    seq_len: int
    input_size: int
    hidden: int
    model: str
    S: int | None
    impl: str
    metric: str
    value: float
    repeats: int
    vs_lstm: float | None = None
    vs_rnn: float | None = None

    @property
    def unit(self) -> str:
        return METRICS[self.metric][0]


def to_csv(rows: list, columns: tuple[str, ...] = COLUMNS) -> str:
    """Tidy CSV of dataclass rows: `columns` read as attributes, floats to 6 digits."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
                    for v in (getattr(r, c) for c in columns)])
    return buf.getvalue()


def read_csv(path: Path) -> list[Row]:
    """Rows back from a bench CSV."""
    with open(path, newline="") as f:
        out = []
        for d in csv.DictReader(f):
            num = lambda k, cast=float: cast(d[k]) if d.get(k, "") != "" else None  # noqa: E731
            out.append(Row(d["device"], d["clock"], int(d["batch"]), int(d["seq_len"]),
                           int(d["input_size"]), int(d["hidden"]), d["model"], num("S", int),
                           d["impl"], d["metric"], float(d["value"]), int(d["repeats"]),
                           num("vs_lstm"), num("vs_rnn")))
        return out


def wide(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """One line per (seq_len, hidden, model, S): headings and formatted cells."""
    present = {r.metric for r in rows}
    cols = [c for c in WIDE if c[1] in present]
    keys: dict[tuple, dict] = {}
    for r in rows:
        cell = keys.setdefault((r.device, r.seq_len, r.hidden, r.model, r.S, r.impl), {})
        cell[r.metric] = r
    head = ["T", "H", "model", "S", "impl"] + [c[0] for c in cols]
    lines = []
    for (_, T, H, model, S, impl), cell in keys.items():
        line = [str(T), str(H), model, "" if S is None else str(S), impl]
        for _, metric, what in cols:
            r = cell.get(metric)
            v = None if r is None else getattr(r, what)
            line.append("" if v is None else _fmt(v, what != "value"))
        lines.append(line)
    return head, lines


def _fmt(v: float, ratio: bool) -> str:
    if ratio:
        return f"{v:.2f}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def rich_lines(head: list[str], lines: list[list[str]], title: str, left: tuple[str, ...]):
    """A rich table of string cells; the columns in `left` left-aligned, the rest right."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for h in head:
        table.add_column(h, justify="left" if h in left else "right")
    for line in lines:
        table.add_row(*line)
    return table


def markdown(rows: list[Row], title: str = "") -> str:
    return (f"### {title}\n\n" if title else "") + markdown_table(*wide(rows))


def rich_table(rows: list[Row], title: str = ""):
    return rich_lines(*wide(rows), title, left=("model", "impl"))


def write_files(out: Path, csv_text: str, md_text: str) -> list[Path]:
    """bench.csv and bench.md in `out`, atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "bench.csv", csv_text)
    atomic_write(out / "bench.md", md_text)
    return [out / "bench.csv", out / "bench.md"]


def write(rows: list[Row], out: Path, meta_md: str) -> list[Path]:
    """bench.csv (tidy) and bench.md (wide table after `meta_md`) in `out`, atomically."""
    return write_files(out, to_csv(rows), meta_md + "\n" + markdown(rows))
