"""`fwbench bench`: speed and memory of models against torch's nn.LSTM and nn.RNN(relu)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fwbench.errors import FwbenchError

EPILOG = ("Example: fwbench bench --model fastweights,lstm,irnn --hidden 20,50,100 --S 1,3 "
          "--threads 1 --out results/bench/cpu. A model may carry settings, e.g. "
          "fastweights:impl=memory, and its own settings win (lstm:hidden=200 keeps 200 units "
          "at every --hidden, for matched state sizes); --set NAME=VALUE applies a setting to "
          "every model that has it. Ratios: vs_lstm / vs_rnn are speed-ups for times (above 1: faster), plain "
          "ratios for sizes. Catch: fwbench bench --env catch:N=24:M=5 --batch 16 --model "
          "irnn,lstm,fastweights --hidden 100. A run's fixed cost: fwbench bench --startup "
          "retrieval --model fastweights,lstm --repeats 5.")


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise FwbenchError(f"invalid --{name} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise FwbenchError(f"invalid --{name} {text!r}: expected integers >= 1")
    return values


def bench(
    models: Annotated[str, typer.Option("--model", help="comma-separated models, NAME[:SETTING=VALUE...]")] = "fastweights",
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
    levels: Annotated[bool, typer.Option("--levels", help="models read every sequence as the "
        "multi-level model (runs of six steps: coarse, four fine with the working state set "
        "aside, coarse again; --seq-len a multiple of 6); nn.LSTM and nn.RNN read it flat")] = False,
    startup: Annotated[Optional[str], typer.Option(help="measure a run's fixed cost instead: "
        "CPU time of fresh `fwbench run --task TASK --model M --set max_steps=1` processes (and "
        "of re-reporting them, and of `fwbench list`) against `python -c 'import torch'`, in "
        "turns, median of --repeats")] = None,
    env: Annotated[Optional[str], typer.Option(help="bench an environment instead: catch[:N=..:M=..]; env steps/s of the gymnasium env, the batched env (--batch games) and A2C training with each of --model at each --hidden")] = None,
) -> None:
    """Measure training and inference throughput, step latency, memory, parameters and state."""
    from fwbench.bench import catch, session, table
    from fwbench.bench.run import BenchSpec
    from fwbench.settings import parse_pairs

    from fwbench.budget import check_sizes
    from fwbench.commands._args import check_number, check_out

    check_number(budget, "budget", low=0, open_low=True)
    check_out(out)
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    for h in _ints(hidden, "hidden"):
        for t in _ints(seq_len, "seq-len"):
            check_sizes({"hidden": h, "seq_len": t, "batch": batch, "input_size": input_size})
    machine = session.Machine(device, threads, out)
    if startup is not None and env is not None:
        raise FwbenchError("give at most one of --startup and --env")
    if levels and (startup is not None or env is not None):
        raise FwbenchError("--levels applies to the models' bench, not to --startup or --env")
    if startup is not None:
        from fwbench.bench import startup as fixed

        progress = (lambda s: None) if quiet else Console(stderr=True).print
        settings = tuple(sorted(parse_pairs(set_, "--set").items()))
        done = session.bench_startup(startup, names, repeats, warmup, settings, machine,
                                     progress)
        if not quiet:
            Console(width=200).print(table.rich_lines(*fixed.lines(done.rows), done.title,
                                                      ("subject", "model", "command")))
    elif env is not None:
        done = session.bench_env(env, names, _ints(hidden, "hidden"), batch, repeats, warmup,
                                 budget, clock, seed, machine)
        if not quiet:
            Console().print(catch.rich_table(done.rows, done.title))
    else:
        chosen = tuple(m.strip() for m in metrics.split(",") if m.strip())
        settings = tuple(sorted(parse_pairs(set_, "--set").items()))
        spec = BenchSpec(names, _ints(hidden, "hidden"), _ints(seq_len, "seq-len"),
                         _ints(S, "S"), batch, input_size, repeats, warmup, budget, chosen,
                         clock, seed, settings, levels)
        progress = (lambda s: None) if quiet else Console(stderr=True).print
        done = session.bench_models(spec, machine, report=progress)
        if not quiet:
            term = Console()
            wide = term if term.is_terminal else Console(width=200)  # a log file: no wrapping
            wide.print(table.rich_table(done.rows, done.title))
    Console().print("wrote " + ", ".join(str(p) for p in done.paths))


def register(app: typer.Typer) -> None:
    app.command(epilog=EPILOG, aliases={"--models": "--model"})(bench)
