"""Bad input across every command: exit code 2, one line on stderr naming what was wrong (and,
where there is a choice, what is allowed), and the results directory left as it was.

`{R}` is a results directory holding finished runs, `{F}` a plain file, `{D}` a folder of
preset files; each case names a fragment its message must contain.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fwbench.cli import app
from trust_harness import tree_digest

REPO = Path(__file__).resolve().parent.parent
PRESETS = {
    "type.toml": 'task = 3\n',
    "seeds.toml": 'task = "retrieval"\nseeds = "three"\n',
    "zero_seeds.toml": 'task = "retrieval"\nseeds = 0\n',
    "scalar_grid.toml": 'task = "retrieval"\n[grid]\nhidden = 20\n',
    "empty_grid.toml": 'task = "retrieval"\n[grid]\nhidden = []\n',
    "grid_table.toml": 'task = "retrieval"\ngrid = [1, 2]\n',
    "settings_list.toml": 'task = "retrieval"\nsettings = [1]\n',
    "escape.toml": 'name = "../../../x"\ntask = "retrieval"\n',
    "slash.toml": 'name = "a/b"\ntask = "retrieval"\n',
    "sweep_escape.toml": 'task = "retrieval"\n[sweeps."../s"]\ngrid = { hidden = [8] }\n',
    "sweep_scalar.toml": 'task = "retrieval"\n[sweeps.s]\ngrid = { hidden = 8 }\n',
    "unknown_key.toml": 'task = "retrieval"\ncolour = "red"\n',
    "no_task.toml": 'name = "x"\n',
    "bad_toml.toml": 'task = "retrieval\n',
    "unknown_task.toml": 'task = "nope"\n',
    "bad_setting.toml": 'task = "retrieval"\n[settings]\nhidden = 0\n',
}
GARBAGE = bytes(range(128, 256)) * 4

RUN = [
    (["--task", "nope"], "unknown task 'nope'; choose one of"),
    (["--model", "nope"], "unknown model 'nope'; choose one of"),
    (["--model", "nope.mod:Cls"], "cannot be loaded"),
    (["--bogus", "1"], "unknown setting 'bogus'"),
    (["--hidden", "0"], "expected integer >= 1"),
    (["--hidden", "-5"], "expected integer >= 1"),
    (["--hidden", "abc"], "expected integer"),
    (["--hidden", "2.5"], "expected integer"),
    (["--hidden", "1000000000"], "hidden <= 16384"),
    (["--hidden", "20000"], "hidden <= 16384"),
    (["--n_train", "1000000000000"], "limit of 10000000 examples"),
    (["--n_valid", "99999999"], "limit of 10000000 examples"),
    (["--n_test", "0"], "expected integer >= 1"),
    (["--batch_size", "1000000", "--hidden", "16000"], "floats per batch"),
    (["--lam", "1.5"], "expected number in [0.0, 1.0]"),
    (["--lam", "nan"], "invalid value 'nan' for lam"),
    (["--lam", "inf"], "invalid value 'inf' for lam"),
    (["--eta", "-1"], "expected number >= 0.0"),
    (["--S", "0"], "expected integer >= 1"),
    (["--K", "27"], "invalid value 27 for K"),
    (["--lr", "abc"], "invalid value 'abc' for lr"),
    (["--layernorm", "maybe"], "expected boolean"),
    (["--impl", "magic"], "expected one of auto"),
    (["--model", "alstm", "--hidden", "7"], "even number"),
    (["--model", "convnet"], "consumes image inputs"),
    (["--set", "lam"], "expected NAME=VALUE"),
    (["--set", "=3"], "expected NAME=VALUE"),
    (["--lam"], "needs a value"),
    (["stray"], "unexpected argument 'stray'"),
    (["--device", "tpu"], "expected auto, cpu, cuda or cuda:N"),
    (["--threads", "-1"], "expected an integer >= 0"),
    (["--threads", "x"], "Invalid value for '--threads'"),
    (["--log", "wandbx"], "choose one of: tensorboard, none"),
    (["--hidden", "20", "--set", "hidden=50"], "conflicting values for hidden"),
    (["--set", "hidden=50", "--hidden", "20"], "conflicting values for hidden"),
    (["--hidden=20", "--hidden", "30"], "conflicting values for hidden"),
    (["--max_steps", "0"], "expected integer >= 1"),
    (["--task", "mnist", "--model", "irnn", "--data_dir", "/nonexistent/mnist"],
     "not found in /nonexistent/mnist"),
    (["--task", "mnist", "--model", "irnn", "--data_dir", "{F}"], "not found in"),
    (["--task", "catch", "--model", "irnn", "--hidden", "0"], "expected integer >= 1"),
    (["--results", "{F}"], "not writable"),
    (["--results", "{F}/sub"], "not writable"),
]
SWEEP = [
    (["--grid", "hidden"], "expected NAME=VALUE[,VALUE...]"),
    (["--grid", "hidden=0,8"], "expected integer >= 1"),
    (["--grid", "hidden=1000000000"], "hidden <= 16384"),
    (["--grid", "bogus=1,2"], "unknown setting 'bogus'"),
    (["--grid", "model=nope"], "unknown model 'nope'"),
    (["--grid", "task=nope"], "unknown task 'nope'"),
    (["--set", "lam=2"], "expected number in [0.0, 1.0]"),
    (["--lam", "2"], "expected number in [0.0, 1.0]"),
    (["--hidden", "8", "--set", "hidden=9"], "conflicting values for hidden"),
    (["--set", "hidden=9", "--hidden", "8"], "conflicting values for hidden"),
    (["--jobs", "0"], "expected an integer >= 1"),
    (["--seeds", "0"], "expected an integer >= 1"),
    (["--seeds", "x"], "Invalid value for '--seeds'"),
    (["--scheduler", "tcp://x:1", "--jobs", "2"], "--jobs and --scheduler conflict"),
    (["--log", "nope"], "choose one of: tensorboard, none"),
    (["--preset", "nope"], "unknown preset 'nope'; choose one of"),
    (["--preset", "table1", "--sweep", "nope"], "has no sweep 'nope'; choose one of"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--task", "nope"], "unknown task 'nope'"),
    (["stray"], "unexpected argument 'stray'"),
    (["--n_train", "1000000000000"], "limit of 10000000 examples"),
    *[(["--preset", f"{{D}}/{name}"], fragment) for name, fragment in [
        ("type.toml", "task = 3 must be a str"),
        ("seeds.toml", "seeds = 'three' must be a int"),
        ("zero_seeds.toml", "seeds = 0 must be >= 1"),
        ("scalar_grid.toml", "grid hidden = 20 must be a non-empty list"),
        ("empty_grid.toml", "must be a non-empty list"),
        ("grid_table.toml", "grid = [1, 2] must be a dict"),
        ("settings_list.toml", "settings = [1] must be a dict"),
        ("escape.toml", "'../../../x' is not a plain name"),
        ("slash.toml", "'a/b' is not a plain name"),
        ("sweep_escape.toml", "sweep '../s' is not a plain name"),
        ("sweep_scalar.toml", "sweeps.s: grid hidden = 8 must be a non-empty list"),
        ("unknown_key.toml", "unknown keys ['colour']"),
        ("no_task.toml", "or no 'task'"),
        ("bad_toml.toml", "is not valid TOML"),
        ("garbage.toml", "is not valid TOML"),
        ("unknown_task.toml", "unknown task 'nope'"),
        ("bad_setting.toml", "expected integer >= 1"),
    ]],
]
REPORT = [
    *[([f"--{opt}", value], f"invalid --{opt} {shown}: expected a finite number")
      for opt in ("threshold", "capacity", "scale")
      for value, shown in (("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"))],
    (["--scale", "0"], "expected a finite number > 0"),
    (["--scale", "-100"], "expected a finite number > 0"),
    (["--threshold", "x"], "Invalid value for '--threshold'"),
    (["--out", "{F}"], "is a file; expected a directory"),
    (["--out", "{F}/sub"], "is a file; expected a directory"),
    (["--direction", "up"], "expected lower or higher"),
    (["--tail", "0"], "expected a whole number of curve points >= 1"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "{D}/escape.toml"], "is not a plain name"),
    (["--preset", "{D}/garbage.toml"], "is not valid TOML"),
    (["--preset", "table1", "--sweep", "nope"], "has no sweep 'nope'"),
    (["--where", "hidden"], "expected NAME=VALUE"),
    (["--set", "lam"], "expected NAME=VALUE"),
    (["--nope"], "No such option: --nope"),
]
REPORT_ELSEWHERE = [  # results directories that cannot be reported
    (["--results", "/nonexistent/results"], "does not exist"),
    (["--results", "{F}/sub"], "does not exist"),
]
BENCH = [
    (["--budget", "nan"], "invalid --budget nan: expected a finite number > 0"),
    (["--budget", "-1"], "invalid --budget -1.0: expected a finite number > 0"),
    (["--budget", "0"], "expected a finite number > 0"),
    (["--budget", "inf"], "expected a finite number > 0"),
    (["--hidden", "1000000000"], "hidden <= 16384"),
    (["--hidden", "0"], "expected integers >= 1"),
    (["--hidden", "a,b"], "expected comma-separated integers"),
    (["--seq-len", "a"], "expected comma-separated integers"),
    (["--seq-len", "100000000", "--hidden", "16000"], "floats per batch"),
    (["--S", "0"], "expected integers >= 1"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--models", "nope"], "unknown model 'nope'"),
    (["--model", "convnet"], "consumes image inputs"),
    (["--model", "fastweights:bogus=1"], "unknown setting 'bogus'"),
    (["--model", "fastweights:impl"], "expected NAME[:SETTING=VALUE...]"),
    (["--model", "fastweights:impl=magic"], "expected one of auto"),
    (["--metrics", "bogus"], "choose from train, infer, step, memory"),
    (["--clock", "x"], "expected auto, wall or cpu"),
    (["--device", "tpu"], "expected auto, cpu, cuda or cuda:N"),
    (["--repeats", "0"], "expected an integer >= 1"),
    (["--env", "nope"], "the environment bench knows 'catch'"),
    (["--out", "{F}"], "is not writable"),
    (["--out", "{F}/sub"], "is not writable"),
    (["--set", "lam"], "expected NAME=VALUE"),
    (["--batch", "x"], "Invalid value for '--batch'"),
    (["--quiet", "yes"], "unexpected extra argument"),
]
SHOW = [
    (["--task", "retrieval"], "has no images to show; choose one of: mnist, faces"),
    (["--task", "nope"], "unknown task 'nope'"),
    (["--split", "x"], "expected train, valid or test"),
    (["--index", "-1"], "Input should be greater than or equal to 0"),
    (["--out", "{F}/x.png"], "is a file; expected a file path"),
    (["--out", "{R}"], "it is a directory; expected a file name"),
    (["--data_dir", "/nonexistent/mnist"], "not found in /nonexistent/mnist"),
]
LIST = [
    (["nope"], "unknown kind 'nope'; choose one of: tasks, models, learners"),
    (["models", "extra"], "unexpected extra argument"),
    (["--bogus"], "No such option: --bogus"),
]
TOP = [
    ([], "No such command 'nocommand'"),
]

CASES = ([("run", a, m) for a, m in RUN] + [("sweep", a, m) for a, m in SWEEP]
         + [("report", a, m) for a, m in REPORT] + [("bench", a, m) for a, m in BENCH]
         + [("show", a, m) for a, m in SHOW] + [("list", a, m) for a, m in LIST]
         + [("nocommand", a, m) for a, m in TOP]
         + [("report", a, m) for a, m in REPORT_ELSEWHERE])


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    results = base / "results"
    runs = sorted((REPO / "evidence" / "runs").glob("retrieval-irnn-h20-*"))[:2]
    for run in runs:
        shutil.copytree(run, results / "runs" / run.name)
    (base / "file").write_text("precious")
    presets = base / "presets"
    presets.mkdir()
    for name, text in PRESETS.items():
        (presets / name).write_text(text)
    (presets / "garbage.toml").write_bytes(GARBAGE)
    return {"{R}": str(results), "{F}": str(base / "file"), "{D}": str(presets)}


def _fill(arg: str, places: dict) -> str:
    for key, value in places.items():
        arg = arg.replace(key, value)
    return arg


def test_at_least_100_cases_across_every_command():
    assert len(CASES) >= 100
    assert {c for c, _, _ in CASES} >= {"run", "sweep", "report", "bench", "show", "list"}


@pytest.mark.parametrize("command, args, message", CASES,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_bad_input_one_line_exit_2_nothing_touched(places, command, args, message):
    base = Path(places["{F}"]).parent
    before = tree_digest(base)
    args = [_fill(a, places) for a in args]
    extra = []  # commands that write under a results root are pointed at the fixture's
    if command in ("run", "sweep", "report") and "--results" not in args:
        extra = ["--results", places["{R}"]]
    if command in ("run", "sweep") and "--quiet" not in args:
        extra.append("--quiet")
    if command == "sweep":
        extra.append("--dry-run")
    if command == "bench" and "--out" not in args:
        extra += ["--out", str(base / "bench")]
    if command == "show" and "--out" not in args:
        extra += ["--out", str(base / "glimpses.png")]
    out = CliRunner().invoke(app, [command, *args, *extra])
    assert out.exit_code == 2, (out.output, out.exception)
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert message in lines[0]
    assert "Traceback" not in out.output
    assert tree_digest(base) == before
