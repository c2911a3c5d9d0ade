"""`fwbench bench`: speed and memory of models against torch's nn.LSTM and nn.RNN(relu)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fwbench.errors import FwbenchError

EPILOG = ("Example: fwbench bench --models fastweights,lstm,irnn --hidden 20,50,100 --S 1,3 "
          "--threads 1 --out results/bench/cpu. A model may carry settings, e.g. "
          "fastweights:impl=memory, and its own settings win (lstm:hidden=200 keeps 200 units "
          "at every --hidden, for matched state sizes); --set NAME=VALUE applies a setting to "
          "every model that has it. Ratios: vs_lstm / vs_rnn are speed-ups for times (above 1: faster), plain "
          "ratios for sizes. Catch: fwbench bench --env catch:N=24:M=5 --batch 16 --models "
          "irnn,lstm,fastweights --hidden 100.")


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise FwbenchError(f"invalid --{name} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise FwbenchError(f"invalid --{name} {text!r}: expected integers >= 1")
    return values


def bench(
    models: Annotated[str, typer.Option(help="comma-separated models, NAME[:SETTING=VALUE...]")] = "fastweights",
    hidden: Annotated[str, typer.Option(help="hidden sizes, comma-separated")] = "20,50,100",
    seq_len: Annotated[str, typer.Option("--seq-len", help="sequence lengths, comma-separated")] = "11",
    S: Annotated[str, typer.Option("--S", help="inner steps for models that have S")] = "1",
    batch: Annotated[int, typer.Option(help="sequences per batch")] = 128,
    input_size: Annotated[int, typer.Option("--input-size", help="input features per step")] = 100,
    repeats: Annotated[int, typer.Option(help="timed repeats per measurement (median)")] = 20,
    warmup: Annotated[int, typer.Option(help="untimed runs first")] = 3,
    budget: Annotated[Optional[float], typer.Option(help="max seconds per model and metric (repeats cut, >= 3)")] = None,
    metrics: Annotated[str, typer.Option(help="any of train,infer,step,memory")] = "train,infer,step,memory",
    clock: Annotated[str, typer.Option(help="auto (cpu time on CPU with 1 thread, else wall), wall or cpu")] = "auto",
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N")] = "auto",
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default)")] = 1,
    seed: Annotated[int, typer.Option(help="seed of inputs and initial weights")] = 0,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="NAME=VALUE model setting")] = None,
    out: Annotated[Optional[Path], typer.Option(help="directory for bench.csv, bench.md, meta.json (default results/bench/DEVICE-TIME)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no table on the terminal")] = False,
    env: Annotated[Optional[str], typer.Option(help="bench an environment instead: catch[:N=..:M=..]; env steps/s of the gymnasium env, the batched env (--batch games) and A2C training with each of --models at each --hidden")] = None,
) -> None:
    """Measure training and inference throughput, step latency, memory, parameters and state."""
    if env is not None:
        return _bench_env(env, models, hidden, batch, repeats, warmup, budget, clock, device,
                          threads, seed, out, quiet)
    from fwbench.bench.run import BenchSpec, run_bench
    from fwbench.bench.subjects import has_setting
    from fwbench.bench.table import rich_table, write
    from fwbench.commands._args import parse_extra

    names = tuple(m.strip() for m in models.split(",") if m.strip())
    chosen = _check_options(names, metrics, clock, batch=batch, input_size=input_size,
                            repeats=repeats)
    dev, out, n_threads, clock = _prepare(device, out, threads, clock, "")
    settings = tuple(sorted((k.replace("-", "_"), v) for k, v in parse_extra([], set_).items()))
    for key, _ in settings:
        if not any(has_setting(m.split(":")[0], key) for m in names):
            raise FwbenchError(f"setting {key!r} of --set belongs to none of the models "
                               f"{', '.join(names)}")
    spec = BenchSpec(names, _ints(hidden, "hidden"), _ints(seq_len, "seq-len"), _ints(S, "S"),
                     batch, input_size, repeats, max(0, warmup), budget, chosen, clock, seed,
                     settings)
    con = Console(stderr=True)
    started = time.perf_counter()
    rows = run_bench(spec, dev, report=(lambda s: None) if quiet else con.print)
    meta = _meta(spec, dev, n_threads, time.perf_counter() - started)
    if not quiet:
        term = Console()
        wide = term if term.is_terminal else Console(width=200)  # a log file: no wrapping
        wide.print(rich_table(rows, f"fwbench bench on {meta['environment']['device']}"))
    from fwbench.records import write_json

    paths = write(rows, out, _meta_markdown(meta))
    write_json(out / "meta.json", meta)
    Console().print("wrote " + ", ".join(str(p) for p in paths + [out / "meta.json"]))


def _bench_env(spec, models, hidden, batch, repeats, warmup, budget, clock, device, threads,
               seed, out, quiet) -> None:
    """`--env`: environment steps per second of Catch alone and of A2C training per agent."""
    from fwbench.bench import catch
    from fwbench.records import write_json

    rules = catch.parse_env(spec)
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    _check_options(names, "train", clock, batch=batch, repeats=repeats)
    sizes = _ints(hidden, "hidden")
    dev, out, n_threads, clock = _prepare(device, out, threads, clock, "catch-")
    started = time.perf_counter()
    rows = catch.catch_bench(rules, batch, names, sizes, repeats, max(0, warmup), budget, clock,
                             dev, seed)
    spec_d = {"env": spec, "rules": dataclasses.asdict(rules), "n_envs": batch,
              "models": names, "hidden": sizes, "repeats": repeats, "warmup": warmup,
              "budget": budget, "clock": clock, "seed": seed}
    meta = _meta(spec_d, dev, n_threads, time.perf_counter() - started)
    env_d = meta["environment"]
    title = f"fwbench bench --env {spec} on {env_d['device']}"
    if not quiet:
        Console().print(catch.rich_table(rows, title))
    head = (f"{title}, {meta['finished']}: {env_d['threads']} thread(s), torch "
            f"{env_d['torch']}, commit {env_d['git_commit']}; clock {clock}, median of "
            f"{repeats} repeats after {warmup} warm-up runs, in turns; one repeat = one episode "
            f"({rules.episode_length} steps) in each of {batch} games (random actions for the "
            "environments; a whole A2C update, rollout and Adam step, for the agents). ×gym / "
            "×batched: speed-up over one gymnasium CatchEnv / over the batched environment, "
            "measured in the same run.\n")
    paths = catch.write(rows, out, head)
    write_json(out / "meta.json", meta)
    Console().print("wrote " + ", ".join(str(p) for p in paths + [out / "meta.json"]))


def _check_options(names, metrics: str, clock: str, **positive: int) -> tuple[str, ...]:
    """FwbenchError for a bad model, metric, clock or count; the chosen metrics otherwise."""
    from fwbench.bench.run import ALL_METRICS
    from fwbench.bench.subjects import parse_model

    for m in names:
        parse_model(m)
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip())
    if not chosen or set(chosen) - set(ALL_METRICS):
        raise FwbenchError(f"invalid --metrics {metrics!r}: choose from {', '.join(ALL_METRICS)}")
    if clock not in ("auto", "wall", "cpu"):
        raise FwbenchError(f"invalid --clock {clock!r}: expected auto, wall or cpu")
    for name, value in positive.items():
        if value < 1:
            raise FwbenchError(f"invalid --{name.replace('_', '-')} {value}: expected an "
                               "integer >= 1")
    return chosen


def _prepare(device: str, out: Path | None, threads: int, clock: str, stem: str):
    """(device, checked output directory, threads set, resolved clock)."""
    from fwbench.device import resolve_device, set_threads

    dev = resolve_device(device)
    if out is None:
        out = Path("results") / "bench" / f"{dev.type}-{stem}{time.strftime('%Y%m%d-%H%M%S')}"
    _check_writable(out)
    n_threads = set_threads(threads)
    if clock == "auto":
        clock = "cpu" if dev.type == "cpu" and n_threads == 1 else "wall"
    return dev, out, n_threads, clock


def _check_writable(out: Path) -> None:
    """FwbenchError before any measuring if `out` could not be created or written."""
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK):
        raise FwbenchError(f"output directory {out} is not writable; choose another with --out")


def _meta(spec, dev, threads: int, seconds: float) -> dict:
    from fwbench.models.fastweights_fused import describe_kernel
    from fwbench.provenance import environment, now

    env = environment(str(dev), threads)
    spec = spec if isinstance(spec, dict) else dict(spec.__dict__)
    return {"spec": spec, "environment": env,
            "finished": now(), "bench_seconds": round(seconds, 1), "kernel": describe_kernel(dev)}


def _meta_markdown(meta: dict) -> str:
    s, env = meta["spec"], meta["environment"]
    return (f"fwbench bench, {meta['finished']}: device {env['device']}"
            f"{' (' + env['gpu'] + ')' if env.get('gpu') else ''}, {env['threads']} thread(s), "
            f"torch {env['torch']}, commit {env['git_commit']}; batch {s['batch']}, input size "
            f"{s['input_size']}, clock {s['clock']}, median of {s['repeats']} repeats after "
            f"{s['warmup']} warm-up runs, in turns. ×LSTM / ×RNN: speed-up over torch nn.LSTM / "
            f"nn.RNN(relu) of the same hidden size in the same run (sizes: plain ratio). saved "
            f"MB: tensors a training forward keeps for backward (saved-tensor hooks).\n"
            f"Settings: {json.dumps(dict(s['settings']))}; kernel: {meta['kernel']}\n")


def register(app: typer.Typer) -> None:
    app.command(epilog=EPILOG)(bench)
