"""Running the benchmark grid: subjects per (seq_len, hidden), measured in turns."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Callable, Iterable

import torch

from fwbench.bench import measure
from fwbench.bench.subjects import Subject, has_setting, make, parse_model
from fwbench.bench.table import LSTM_REF, METRICS, REFERENCES, RNN_REF, Row
from fwbench.errors import FwbenchError
from fwbench.tasks.glimpses import quadrant_run_marks

ALL_METRICS = ("train", "infer", "step", "memory")


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    models: tuple[str, ...]
    hidden: tuple[int, ...] = (20, 50, 100)
    seq_len: tuple[int, ...] = (11,)
    S: tuple[int, ...] = (1,)
    batch: int = 128
    input_size: int = 100
    repeats: int = 20
    warmup: int = 3
    budget: float | None = None  # seconds per run and metric (repeats cut, at least 3)
    metrics: tuple[str, ...] = ALL_METRICS
    clock: str = "wall"
    seed: int = 0
    settings: tuple[tuple[str, str], ...] = ()  # model settings applied where they exist
    levels: bool = False  # models read x as the multi-level model (`level_marks`); refs flat


def level_marks(T: int) -> tuple[int, ...]:
    """The level marks of the quadrant glimpses (`fwbench.tasks.glimpses`), one quadrant's run
    (coarse, four fine, coarse again) repeated to T steps; FwbenchError unless the run's
    length divides T."""
    run = quadrant_run_marks()
    if T % len(run):
        raise FwbenchError(f"--levels reads runs of {len(run)} steps (coarse, four fine, "
                           f"coarse), as the quadrant glimpses; --seq-len {T} is not a multiple "
                           f"of {len(run)}")
    return run * (T // len(run))


def subject_grid(spec: BenchSpec) -> list[tuple[str, int | None]]:
    """(model spec, S or None) pairs: one per S value for models with an S setting."""
    out = [(ref, None) for ref in REFERENCES]
    for m in spec.models:
        name, own = parse_model(m)
        if name in REFERENCES:
            continue
        fixed = "S" in own
        out += [(m, S) for S in spec.S] if has_setting(name, "S") and not fixed else [(m, None)]
    return out


def run_bench(spec: BenchSpec, device: torch.device,
              report: Callable[[str], None] = lambda s: None) -> list[Row]:
    """Measure every subject at every (hidden, seq_len); rows with ratios to the references."""
    rows: list[Row] = []
    timer = measure.clock_fn(spec.clock, device)
    for T in spec.seq_len:
        for H in spec.hidden:
            group = _group(spec, device, H, T, timer)
            rows += _with_ratios(group)
            report(f"seq_len {T}, hidden {H}: {len(group)} measurements")
    return rows


def _group(spec, device, H, T, timer) -> list[Row]:
    gen = torch.Generator().manual_seed(spec.seed)
    x = torch.randn(spec.batch, T, spec.input_size, generator=gen).to(device)
    subjects = []
    for model, S in subject_grid(spec):
        torch.manual_seed(spec.seed)
        subjects.append(make(model, H, S, spec.input_size, dict(spec.settings), x,
                             level_marks(T) if spec.levels else None))
    # one fixed random target per output width (a model may set its own hidden size)
    widths = sorted({s.hidden for s in subjects})
    targets = {w: torch.randn(spec.batch, T, w, generator=gen).to(device) for w in widths}
    base = dict(device=device.type, batch=spec.batch, seq_len=T, input_size=spec.input_size,
                hidden=H, clock=spec.clock)
    rows = []
    for sub in subjects:
        ident = dict(base, model=sub.label, S=sub.S, impl=sub.impl)
        rows += [Row(**ident, metric="params", value=sub.params, repeats=1),
                 Row(**ident, metric="state_floats", value=sub.state_floats, repeats=1)]
    kinds = {"train": lambda s: measure.train_step(s, x, targets[s.hidden]),
             "infer": lambda s: measure.inference(s, x), "step": lambda s: measure.stepping(s, x)}
    for kind in (k for k in kinds if k in spec.metrics):
        runs = {s.label + f"@{s.S}": kinds[kind](s) for s in subjects}
        times = measure.interleaved(runs, spec.repeats, spec.warmup, timer, spec.budget)
        for s in subjects:
            t = times[s.label + f"@{s.S}"]
            rows.append(_time_row(base, s, kind, statistics.median(t), len(t), spec.batch, T))
    if "memory" in spec.metrics:
        rows += _memory_rows(base, subjects, x, targets, device)
    return rows


def _time_row(base, s: Subject, kind: str, seconds: float, n: int, B: int, T: int) -> Row:
    ident = dict(base, model=s.label, S=s.S, impl=s.impl, repeats=n)
    if kind == "step":
        return Row(**ident, metric="step_ms", value=1e3 * seconds / T)
    return Row(**ident, metric=f"{kind}_seq_per_s", value=B / seconds)


def _memory_rows(base, subjects: Iterable[Subject], x, targets, device) -> list[Row]:
    rows = []
    for s in subjects:
        target = targets[s.hidden]
        ident = dict(base, model=s.label, S=s.S, impl=s.impl, repeats=1)
        rows.append(Row(**ident, metric="saved_MB",
                        value=measure.saved_bytes(s, x, target) / 2 ** 20))
        if device.type == "cuda":
            step = measure.train_step(s, x, target)
            step()  # optimiser state allocated before the peak is taken
            rows.append(Row(**ident, metric="peak_MB",
                            value=measure.cuda_peak_bytes(step, device) / 2 ** 20))
    return rows


def _with_ratios(rows: list[Row]) -> list[Row]:
    """Fill vs_lstm and vs_rnn from the reference rows of the same metric."""
    ref = {(r.model, r.metric): r.value for r in rows if r.model in REFERENCES}
    out = []
    for r in rows:
        speed = METRICS[r.metric][1]  # +1: higher is faster, -1: a time, 0: a size
        ratios = {}
        for col, name in (("vs_lstm", LSTM_REF), ("vs_rnn", RNN_REF)):
            b = ref.get((name, r.metric))
            if b and r.value:
                ratios[col] = b / r.value if speed < 0 else r.value / b
        out.append(dataclasses.replace(r, **ratios))
    return out
