"""One `fwbench bench` from Python: options checked, device and output directory resolved,
measurements taken, bench.csv, bench.md and meta.json (provenance) written.

`bench_models` measures models against torch's nn.LSTM and nn.RNN(relu); `bench_env` measures
Catch's environment steps per second alone and under A2C training. Every check that can fail
runs before anything is measured or written, so bad input leaves nothing on disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

from fwbench.bench import catch, table
from fwbench.bench.run import ALL_METRICS, BenchSpec, level_marks, run_bench
from fwbench.bench.subjects import has_setting, parse_model
from fwbench.errors import FwbenchError
from fwbench.records import write_json


@dataclasses.dataclass
class Outcome:
    """What a bench measured and where it wrote it."""

    rows: list
    out: Path
    paths: list[Path]  # bench.csv, bench.md, meta.json
    meta: dict
    title: str


@dataclasses.dataclass(frozen=True)
class Machine:
    """Where a bench runs: device, CPU threads (0: torch's default), output directory (None:
    results/bench/DEVICE-TIME)."""

    device: str = "auto"
    threads: int = 1
    out: Path | None = None


def check_options(models: tuple[str, ...], metrics: tuple[str, ...], clock: str,
                  **positive: int) -> None:
    """FwbenchError for a bad model, metric, clock or count."""
    for m in models:
        parse_model(m)
    if not metrics or set(metrics) - set(ALL_METRICS):
        raise FwbenchError(f"invalid --metrics {','.join(metrics)!r}: choose from "
                           f"{', '.join(ALL_METRICS)}")
    if clock not in ("auto", "wall", "cpu"):
        raise FwbenchError(f"invalid --clock {clock!r}: expected auto, wall or cpu")
    for name, value in positive.items():
        if value < 1:
            raise FwbenchError(f"invalid --{name.replace('_', '-')} {value}: expected an "
                               "integer >= 1")


def check_settings(models: tuple[str, ...], settings: dict[str, str]) -> None:
    """FwbenchError for a common setting that no model has."""
    for key in settings:
        if not any(has_setting(parse_model(m)[0], key) for m in models):
            raise FwbenchError(f"setting {key!r} of --set belongs to none of the models "
                               f"{', '.join(models)}")


def prepare(machine: Machine, clock: str, stem: str) -> tuple[torch.device, Path, int, str]:
    """(device, checked output directory, threads set, resolved clock)."""
    from fwbench.device import resolve_device, set_threads

    dev = resolve_device(machine.device)
    out = machine.out
    if out is None:
        out = Path("results") / "bench" / f"{dev.type}-{stem}{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable(out)
    n_threads = set_threads(machine.threads)
    if clock == "auto":
        clock = "cpu" if dev.type == "cpu" and n_threads == 1 else "wall"
    return dev, Path(out), n_threads, clock


def check_writable(out: Path) -> None:
    """FwbenchError before any measuring if `out` could not be created or written.

    Nothing is created here: a bench refused later (a model that is no agent) leaves no
    empty directory behind.
    """
    base = Path(out)
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK):
        raise FwbenchError(f"output directory {out} is not writable; choose another with --out")


def bench_models(spec: BenchSpec, machine: Machine = Machine(),
                 report: Callable[[str], None] = lambda s: None) -> Outcome:
    """Measure `spec` (clock "auto" resolved here) and write bench.csv, bench.md, meta.json."""
    check_options(spec.models, spec.metrics, spec.clock, batch=spec.batch,
                  input_size=spec.input_size, repeats=spec.repeats)
    check_settings(spec.models, dict(spec.settings))
    for T in spec.seq_len if spec.levels else ():
        level_marks(T)  # FwbenchError for a length the marks do not divide
    dev, out, n_threads, clock = prepare(machine, spec.clock, "")
    spec = dataclasses.replace(spec, clock=clock, warmup=max(0, spec.warmup))
    started = time.perf_counter()
    rows = run_bench(spec, dev, report=report)
    meta = _meta(dataclasses.asdict(spec), dev, n_threads, time.perf_counter() - started)
    paths = table.write(rows, out, _meta_markdown(meta))
    write_json(out / "meta.json", meta)
    title = f"fwbench bench on {meta['environment']['device']}"
    return Outcome(rows, out, paths + [out / "meta.json"], meta, title)


def bench_env(env: str, models: tuple[str, ...], hidden: tuple[int, ...], n_envs: int,
              repeats: int = 20, warmup: int = 3, budget: float | None = None,
              clock: str = "auto", seed: int = 0, machine: Machine = Machine()) -> Outcome:
    """Environment steps per second of Catch (`env`, e.g. catch:N=24:M=5) alone and under A2C
    training with each model at each hidden size; bench.csv, bench.md, meta.json written."""
    rules = catch.parse_env(env)
    check_options(models, ("train",), clock, batch=n_envs, repeats=repeats)
    dev, out, n_threads, clock = prepare(machine, clock, "catch-")
    started = time.perf_counter()
    rows = catch.catch_bench(rules, n_envs, models, hidden, repeats, max(0, warmup), budget,
                             clock, dev, seed)
    spec = {"env": env, "rules": dataclasses.asdict(rules), "n_envs": n_envs, "models": models,
            "hidden": hidden, "repeats": repeats, "warmup": warmup, "budget": budget,
            "clock": clock, "seed": seed}
    return _written(rows, out, spec, dev, n_threads, started, f"--env {env}", lambda e: (
        f"{e['threads']} thread(s), torch {e['torch']}, commit {e['git_commit']}; clock "
        f"{clock}, median of {repeats} repeats after {warmup} warm-up runs, in turns; one "
        f"repeat = one episode ({rules.episode_length} steps) in each of {n_envs} games (random "
        "actions for the environments; a whole A2C update, rollout and Adam step, for the "
        "agents). ×gym / ×batched: speed-up over one gymnasium CatchEnv / over the batched "
        "environment, measured in the same run.\n"), catch.write)


def bench_startup(task: str, models: tuple[str, ...], repeats: int = 5, warmup: int = 1,
                  settings: tuple[tuple[str, str], ...] = (), machine: Machine = Machine(),
                  report: Callable[[str], None] = lambda s: None) -> Outcome:
    """A run's fixed cost in fresh processes against `import torch` (`fwbench.bench.startup`);
    bench.csv, bench.md, meta.json written."""
    from fwbench.bench import startup

    check_options(models, ("train",), "cpu", repeats=repeats)
    if machine.threads != 1:
        raise FwbenchError(f"invalid --threads {machine.threads} for --startup: its runs use "
                           "one thread (give --threads 1)")
    dev, out, n_threads, _ = prepare(Machine("cpu", 1, machine.out), "cpu", f"startup-{task}-")
    started = time.perf_counter()
    rows = startup.startup_bench(task, models, repeats, max(0, warmup), settings, report)
    spec = {"startup": task, "models": models, "settings": settings, "repeats": repeats,
            "warmup": warmup,
            "clock": "child process CPU time (user + system)"}
    return _written(rows, out, spec, dev, n_threads, started, f"--startup {task}", lambda e: (
        f"torch {e['torch']}, commit {e['git_commit']}; median of {repeats} turns after "
        f"{warmup} warm-up turn(s), every subject a fresh process, in turns. CPU s: the "
        "child's user + system time; ×import torch: over `python -c \"import torch\"` in the "
        "same turns (the floor of any process that trains). `run`: a one-update run into an "
        "empty results directory (imports, data, model, one update, one validation pass, the "
        "test pass, the record), with its set-up (CPU before the first update: interpreter, "
        "imports, data, model) and test pass as the run recorded them; `re-report`: the same "
        "command once that run has finished.\n"), startup.write)


def _written(rows, out: Path, spec: dict, dev, threads: int, started: float, what: str,
             details: Callable[[dict], str], write) -> Outcome:
    """Write a bench by subject: `write(rows, out, head)`'s table under a head naming the
    bench (`what`), its time and `details(environment)`, then meta.json."""
    meta = _meta(spec, dev, threads, time.perf_counter() - started)
    env = meta["environment"]
    title = f"fwbench bench {what} on {env['device']}"
    paths = write(rows, out, f"{title}, {meta['finished']}: " + details(env))
    write_json(out / "meta.json", meta)
    return Outcome(rows, out, paths + [out / "meta.json"], meta, title)


def _meta(spec: dict, dev: torch.device, threads: int, seconds: float) -> dict:
    """Provenance of a bench: its spec, the environment, and the compiled kernels' state."""
    # the compiled kernels; the bench says whether each served this device
    from fwbench.models import alstm_fused
    from fwbench.models.fastweights_fused import describe_kernel
    from fwbench.provenance import environment, now

    return {"spec": spec, "environment": environment(str(dev), threads), "finished": now(),
            "bench_seconds": round(seconds, 1), "kernel": describe_kernel(dev),
            "alstm_kernel": alstm_fused.describe_kernel(dev)}


def _meta_markdown(meta: dict) -> str:
    s, env = meta["spec"], meta["environment"]
    return (f"fwbench bench, {meta['finished']}: device {env['device']}"
            f"{' (' + env['gpu'] + ')' if env.get('gpu') else ''}, {env['threads']} thread(s), "
            f"torch {env['torch']}, commit {env['git_commit']}; batch {s['batch']}, input size "
            f"{s['input_size']}, clock {s['clock']}, median of {s['repeats']} repeats after "
            f"{s['warmup']} warm-up runs, in turns. ×LSTM / ×RNN: speed-up over torch nn.LSTM / "
            f"nn.RNN(relu) of the same hidden size in the same run (sizes: plain ratio). saved "
            f"MB: tensors a training forward keeps for backward (saved-tensor hooks).\n"
            f"Settings: {json.dumps(dict(s['settings']))}; kernel: {meta['kernel']}"
            f"{'; alstm kernel: ' + str(meta['alstm_kernel']) if 'alstm_kernel' in meta else ''}\n")
