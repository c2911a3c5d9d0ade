"""A run's fixed cost (`fwbench bench --startup TASK`): the CPU time of whole fwbench processes,
each started fresh, against `python -c "import torch"` measured in the same turns.

Subjects, one fresh interpreter each, measured in turns so that the machine's load touches all
alike (medians over the repeats):

* `import torch`: the floor every process that trains pays, not fwbench's to cut (reference);
* `run MODEL`: `fwbench run --task TASK --model MODEL --set max_steps=1` into an empty results
  directory: imports, data, the model, one update, one validation pass, the test pass and the
  run record, i.e. everything a run costs beside its training; the run's own summary splits
  out its set-up (CPU time before the first update) and its test pass;
* `re-report MODEL`: the same command again once that run has finished, which answers from the
  record without importing torch;
* `list`: `fwbench list` (after a warm-up turn: its description is cached per code version,
  and only the first call after a change of the code imports torch to build it).

The clock is the child's CPU time (user + system, from the operating system's accounting of
waited-for children), which is its compute however many other processes share the cores; wall
time is kept beside it. Each child reports whether it imported torch. Rows carry the ratio to
the `import torch` median of the same bench.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fwbench import markdown
from fwbench.bench import table
from fwbench.errors import FwbenchError

TORCH = "import torch"
COLUMNS = ("task", "subject", "model", "cpu_s", "wall_s", "vs_torch_import", "setup_cpu_s",
           "test_cpu_s", "imports_torch", "repeats", "command")
# runs the command's module as __main__ and, at exit, writes whether torch was imported
_PROBE = ("import atexit, json, runpy, sys\n"
          "out = sys.argv.pop(1)\n"
          "atexit.register(lambda: open(out, 'w').write(json.dumps('torch' in sys.modules)))\n"
          "sys.argv[0] = sys.argv[1]\n"
          "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)\n")


@dataclasses.dataclass(frozen=True)
class StartupRow:
    task: str
    subject: str  # import torch | run | re-report | list
    model: str | None
    cpu_s: float  # median CPU seconds of the child process
    wall_s: float  # median wall seconds
    imports_torch: bool
    repeats: int
    command: str
    vs_torch_import: float | None = None  # cpu_s / the `import torch` median
    # `run` only, from its summary.json: CPU seconds before the first update (interpreter,
    # imports, data, model) and of the test pass
    setup_cpu_s: float | None = None
    test_cpu_s: float | None = None


def _child(argv: list[str], cwd: Path) -> tuple[float, float, bool]:
    """(CPU seconds, wall seconds, whether torch was imported) of one fresh interpreter running
    module `argv[0]` with arguments `argv[1:]` ("-c" runs code, as python does)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as flag:
        flag_path = flag.name
    cmd = [sys.executable, *argv] if argv[0] == "-c" else [sys.executable, "-c", _PROBE,
                                                           flag_path, *argv]
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise FwbenchError(f"startup bench: `{' '.join(argv)}` failed (exit "
                               f"{done.returncode}): {done.stderr.strip()[-400:]}")
        text = Path(flag_path).read_text()
    finally:
        Path(flag_path).unlink(missing_ok=True)
    imported = bool(json.loads(text)) if text else "torch" in argv[-1]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, imported


def _commands(task: str, models: tuple[str, ...], settings: tuple[tuple[str, str], ...],
              results: Path) -> list[tuple[str, str | None, list[str]]]:
    """(subject, model, argv) of every subject, `run` before `re-report` for each model."""
    subjects = [(TORCH, None, ["-c", "import torch"]), ("list", None, ["fwbench", "list"])]
    given = [a for k, v in settings for a in ("--set", f"{k}={v}")]
    for m in models:
        argv = ["fwbench", "run", "--task", task, "--model", m, "--set", "max_steps=1", *given,
                "--results", str(results / m), "--threads", "1"]
        subjects += [("run", m, argv), ("re-report", m, argv)]
    return subjects


def startup_bench(task: str, models: tuple[str, ...], repeats: int, warmup: int,
                  settings: tuple[tuple[str, str], ...] = (), report=lambda s: None
                  ) -> list[StartupRow]:
    """Median CPU and wall seconds per subject over `repeats` turns after `warmup` turns;
    `settings` are given to every run (`--set NAME=VALUE`)."""
    from fwbench.tasks import TASKS

    if task not in TASKS.names():
        raise FwbenchError(f"invalid --startup {task!r}: choose one of "
                           f"{', '.join(TASKS.names())}")
    from fwbench.config import resolve

    for m in models:  # every request checked before anything runs: one line for a bad one
        resolve(task, m, {**dict(settings), "max_steps": "1"})
    samples: dict[tuple, list[tuple[float, float, bool]]] = {}
    phases: dict[str, list[tuple[float, float]]] = {}  # per model: (setup, test) CPU seconds
    with tempfile.TemporaryDirectory(prefix="fwbench-startup-") as tmp:
        for turn in range(warmup + repeats):
            results = Path(tmp) / f"results-{turn}"  # a fresh record each turn: `run` runs
            for subject, model, argv in _commands(task, models, settings, results):
                got = _child(argv, Path.cwd())
                if turn >= warmup:
                    shown = ('python -c "import torch"' if subject == TORCH else
                             " ".join(argv).replace(str(results / str(model)), "DIR"))
                    samples.setdefault((subject, model, shown), []).append(got)
                    if subject == "run":
                        phases.setdefault(model, []).append(_phases(results / model))
            report(f"turn {turn + 1}/{warmup + repeats}")
    rows = []
    for (subject, model, command), got in samples.items():
        split = phases.get(model) if subject == "run" else None
        rows.append(StartupRow(
            task, subject, model, statistics.median(c for c, _, _ in got),
            statistics.median(w for _, w, _ in got), any(i for _, _, i in got), len(got),
            command, setup_cpu_s=statistics.median(a for a, _ in split) if split else None,
            test_cpu_s=statistics.median(b for _, b in split) if split else None))
    ref = next(r.cpu_s for r in rows if r.subject == TORCH)
    return [dataclasses.replace(r, vs_torch_import=r.cpu_s / ref) for r in rows]


def _phases(results: Path) -> tuple[float, float]:
    """(set-up, test) CPU seconds that the one run under `results` recorded."""
    from fwbench.records import read_json

    (path,) = Path(results).glob("runs/*/summary.json")
    summary = read_json(path)
    return summary["setup_cpu_s"], summary["test_cpu_s"]


def lines(rows: list[StartupRow]) -> tuple[list[str], list[list[str]]]:
    head = ["subject", "model", "CPU s", "wall s", "×import torch", "set-up CPU s",
            "test CPU s", "imports torch", "n", "command"]
    num = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    body = [[r.subject, r.model or "", f"{r.cpu_s:.3f}", f"{r.wall_s:.3f}",
             f"{r.vs_torch_import:.2f}", num(r.setup_cpu_s), num(r.test_cpu_s),
             "yes" if r.imports_torch else "no", str(r.repeats), f"`{r.command}`"]
            for r in rows]
    return head, body


def write(rows: list[StartupRow], out: Path, meta_md: str) -> list[Path]:
    """bench.csv (tidy) and bench.md (table after `meta_md`) in `out`, atomically."""
    return table.write_files(out, table.to_csv(rows, COLUMNS),
                             meta_md + "\n" + markdown.table(*lines(rows)))
