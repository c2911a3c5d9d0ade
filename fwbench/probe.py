"""A memory probe: a linear read-out, trained on a trained model's frozen hidden states, that
decodes what the task requires it to remember, per step. It tells memory apart from policy: an
agent may hold the ball's column and still move badly, or move well by other means.

A task names its probe targets (`probes`) and gives, per example and step, the integer label to
decode or -1 where there is none (`probe_targets`: Catch's ball column at the blind steps,
retrieval's values). Here the run's weights (best.pt, or the final checkpoint) are loaded as
tensors only, or the network is rebuilt as its seed initialised it (`init`: the control that
says what the architecture holds before any learning); the model's recurrent output (or its whole state) is collected on a fixed set of
examples or greedy episodes; and at each step a multinomial logistic regression is fitted with
L-BFGS (bounded weights: `L2`) on the first 70% of the examples and scored on the rest, beside the score of always
answering the most frequent training label (chance). The results go to `probe.json` in the run
directory, written atomically; one entry per (target, features, weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fwbench.config import from_dict
from fwbench.errors import FwbenchError
from fwbench.learners import checkpoint
from fwbench.records import RunRecord, read_json, write_json
from fwbench.tasks import TASKS

PROBE_FILE = "probe.json"
FEATURES = ("output", "state")  # the core's output at each step, or its whole state
WEIGHTS = ("best", "final", "init")
PROBE_STREAM = 2  # env_seeds stream of the probe's episodes (0: training, 1: evaluation)
TRAIN_SHARE = 0.7  # of the examples, in order, fits the read-out; the rest scores it
ITERATIONS = 200  # L-BFGS iterations per step
# weight decay of the read-out. Episodes are few distinct trajectories (in straight-motion
# Catch a greedy agent's episode is a function of the ball's column), and a few points in a
# 100-dimensional state are separable by some linear map whatever the state: without a bound
# on the weights, a probe would decode residues that have all but decayed away. Features are
# scaled by one number (their mean norm), not per dimension, for the same reason.
L2 = 1e-3


def check_target(task: str, target: str | None) -> str:
    """The probe target to use (the task's first by default); FwbenchError where the task
    defines no such target."""
    names = TASKS.get(task).probes
    if not names:
        raise FwbenchError(f"task {task!r} defines no probe targets")
    if target is None:
        return names[0]
    if target not in names:
        raise FwbenchError(f"task {task!r} defines no probe target {target!r}; it defines: "
                           + ", ".join(names))
    return target


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise FwbenchError(f"invalid {what} {value!r}: expected one of {', '.join(allowed)}")
    return value


def entries(run_dir: Path) -> list[dict[str, Any]]:
    """The probes recorded beside a run (none if it has no probe.json)."""
    path = Path(run_dir) / PROBE_FILE
    if not path.exists():
        return []
    try:
        return list(read_json(path)["probes"])
    except (OSError, ValueError, KeyError, TypeError):
        raise FwbenchError(f"{path} is unreadable; delete it to probe the run again") from None


def probed(run_dir: Path, target: str, features: str, weights: str) -> bool:
    """Whether this probe of the run is recorded already."""
    return any((e.get("target"), e.get("features"), e.get("weights")) == (target, features,
                                                                            weights)
               for e in entries(run_dir))


def load_weights(record: RunRecord, weights: str, key: str, cfg=None, task=None) -> dict:
    """The network's state dict: best.pt, the final checkpoint's `key` entry, or (`init`) the
    network as the run's seed built it before its first update."""
    if weights == "init":
        from fwbench.network import build_agent, build_classifier

        build = build_agent if key == "agent" else build_classifier
        return build(cfg, task).state_dict()
    if weights == "best":
        return checkpoint.load(record, record.best_path, torch.device("cpu"))
    return checkpoint.load(record, record.checkpoint_path, torch.device("cpu"))[key]


def flat_state(state) -> torch.Tensor:
    """A recurrent state (a tensor or a tuple of them) as one vector per example [B, F]."""
    leaves = state if isinstance(state, tuple) else (state,)
    return torch.cat([s.reshape(s.shape[0], -1) for s in leaves], dim=1)


@torch.no_grad()
def collect_episodic(cfg, task, weights: dict, target: str, features: str,
                     episodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [E, T, F], labels [E, T]) of the agent on `episodes` fixed episodes, its
    actions sampled from its policy as in training (a fixed generator), so that episodes
    differ by more than the ball's column."""
    from fwbench.envs.seeds import env_seeds
    from fwbench.network import build_agent

    agent = build_agent(cfg, task)
    agent.load_state_dict(weights)
    agent.eval()
    env = task.batched(env_seeds(0, PROBE_STREAM, episodes), "cpu")
    obs, carry = env.reset(), agent.initial(env.n, "cpu")
    gen, feats, labels = torch.Generator().manual_seed(0), [], []
    for _ in range(task.episode_length):  # every episode lasts exactly this long
        labels.append(task.probe_targets(target, env))
        y, state = agent.hidden(obs, carry)
        feats.append(y if features == "output" else flat_state(state))
        probs = torch.softmax(agent.policy(y), -1)
        action = torch.multinomial(probs, 1, generator=gen)[:, 0]
        obs, _, done = env.step(action)
        carry = agent.next_carry(state, action, done)
    return torch.stack(feats, 1), torch.stack(labels, 1)


@torch.no_grad()
def collect_supervised(cfg, task, weights: dict, target: str, features: str,
                       examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, T, F], labels [N, T]) of the classifier's model on test examples."""
    from fwbench.models.base import RecurrentCore
    from fwbench.network import build_classifier

    net = build_classifier(cfg, task)
    net.load_state_dict(weights)
    net.eval()
    if net.model.consumes != "sequence":
        raise FwbenchError(f"model {cfg.model!r} reads images, not sequences: nothing to probe "
                           "per step")
    test = task.splits(cfg.learner_cfg.data_seed)["test"]
    x, y = test.x[:examples], test.y[:examples]
    z = net.encoder(x)  # [N, T, D]
    if features == "output":
        return net.model.outputs(z), task.probe_targets(target, x, y)
    if not isinstance(net.model, RecurrentCore):
        raise FwbenchError(f"model {cfg.model!r} has no recurrent state to probe; use "
                           "--features output")
    state, feats = net.model.initial_state(len(x), "cpu"), []
    for zt in z.unbind(1):
        _, state = net.model.step(zt, state)
        feats.append(flat_state(state))
    return torch.stack(feats, 1), task.probe_targets(target, x, y)


def fit_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                 y_test: torch.Tensor, classes: int) -> float:
    """Held-out accuracy of a multinomial logistic regression fitted to (x_train, y_train)."""
    mean = x_train.mean(0)
    scale = (x_train - mean).norm(dim=1).mean() + 1e-12  # one scale for all dimensions
    x_train, x_test = (x_train - mean) / scale, (x_test - mean) / scale
    w = torch.zeros(x_train.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    xt, xe = x_train.double(), x_test.double()
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=ITERATIONS, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        out = torch.nn.functional.cross_entropy(xt @ w + b, y_train) + L2 * w.pow(2).sum()
        out.backward()
        return out

    with torch.enable_grad():
        opt.step(loss)
    with torch.no_grad():
        return (xe @ w + b).argmax(1).eq(y_test).double().mean().item()


def per_step(feats: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
    """Accuracy and chance at every step with labels in both parts of the split."""
    n_train = int(round(TRAIN_SHARE * len(labels)))
    classes = int(labels.max()) + 1
    out = []
    for t in range(labels.shape[1]):
        y_tr, y_te = labels[:n_train, t], labels[n_train:, t]
        keep_tr, keep_te = y_tr >= 0, y_te >= 0
        if not keep_tr.any() or not keep_te.any():
            continue
        x_tr, x_te = feats[:n_train, t][keep_tr].float(), feats[n_train:, t][keep_te].float()
        acc = fit_accuracy(x_tr, y_tr[keep_tr], x_te, y_te[keep_te], classes)
        common = torch.bincount(y_tr[keep_tr], minlength=classes).argmax()
        chance = y_te[keep_te].eq(common).double().mean().item()
        out.append({"step": t, "accuracy": round(acc, 6), "chance": round(chance, 6),
                    "n_test": int(keep_te.sum())})
    return out


def probe_run(run_dir: Path, target: str | None = None, features: str = "output",
              weights: str = "best", examples: int = 1000) -> dict[str, Any]:
    """Probe one finished run and record the result in its probe.json; the new entry."""
    record = RunRecord(Path(run_dir))
    summary = record.read_summary()
    if not summary or summary.get("status") != "completed":
        raise FwbenchError(f"run {record.run_id} has not completed; only finished runs are "
                           "probed")
    cfg = from_dict(record.read_config()["config"])
    target = check_target(cfg.task, target)
    task = TASKS.get(cfg.task)(cfg.task_cfg)
    if cfg.learner == "a2c":
        state = load_weights(record, weights, "agent", cfg, task)
        feats, labels = collect_episodic(cfg, task, state, target, features, examples)
    else:
        state = load_weights(record, weights, "model", cfg, task)
        feats, labels = collect_supervised(cfg, task, state, target, features, examples)
    entry = {"target": target, "features": features, "weights": weights,
             "examples": int(len(labels)), "train_share": TRAIN_SHARE,
             "steps": per_step(feats, labels)}
    kept = [e for e in entries(record.path)
            if (e.get("target"), e.get("features"), e.get("weights")) != (target, features,
                                                                            weights)]
    write_json(record.path / PROBE_FILE, {"probes": kept + [entry]})
    return entry


def plan(results: Path, run: str | None, preset: str | None, target: str | None,
         features: str, weights: str, examples: int) -> tuple[list, list]:
    """(runs to probe, runs probed already), each (run directory, target), every input checked
    before anything is written; FwbenchError naming the first fault."""
    from fwbench.records import run_path

    check_choice(features, FEATURES, "features")
    check_choice(weights, WEIGHTS, "weights")
    if examples < 10:
        raise FwbenchError(f"invalid examples {examples}: expected at least 10 (30% score)")
    if (run is None) == (preset is None):
        raise FwbenchError("give exactly one of --run RUN_ID and --preset NAME")
    if run is not None:
        path = run_path(Path(results), run)
        if not (path / "config.json").is_file():
            raise FwbenchError(f"no run {run!r} under {results}")
        paths = [path]
    else:
        paths = _preset_runs(Path(results), preset)
    todo, done = [], []
    for path in paths:
        task = read_json(path / "config.json")["config"]["task"]
        name = check_target(task, target)
        (done if probed(path, name, features, weights) else todo).append((path, name))
    return todo, done


def _preset_runs(results: Path, name: str) -> list[Path]:
    """The finished (completed) runs of a preset under `results`: of its grid, the settings
    its protocol searches (say lr) at whatever value the protocol gave them."""
    from fwbench import presets
    from fwbench.records import runs_root
    from fwbench.report.spec import in_preset

    preset = presets.load(name)
    searched = {k for space in (preset.protocol.search.values() if preset.protocol else ())
                for k in space}
    found = []
    root = runs_root(results)
    for path in sorted(root.glob("*/config.json")) if root.is_dir() else []:
        saved = read_json(path)
        summary = path.parent / "summary.json"
        if not summary.is_file() or read_json(summary).get("status") != "completed":
            continue
        flat = saved.get("flat", {})
        if in_preset(flat, preset, sets={k: flat[k] for k in searched if k in flat}):
            found.append(path.parent)
    if not found:
        raise FwbenchError(f"no finished run of preset {name!r} under {results}")
    return found
