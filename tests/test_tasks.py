"""Registry-driven checks that every task honours its contract (`SupervisedTask` or
`EpisodicTask`): determinism under seed, the worked example in its docstring, and the shapes
the learners rely on. A memory-chain task defined here shows that an episodic task needs no
change to the learner: a module and a registration line are all it takes."""

from __future__ import annotations

import dataclasses
import doctest
import sys
from typing import Any, ClassVar, Sequence

import numpy as np
import pytest
import torch
from gymnasium.utils import seeding
from PIL import Image

from fwbench.config import resolve
from fwbench.data import mnist
from fwbench.data.idx import write_idx
from fwbench.envs.seeds import env_seeds
from fwbench.learners import LEARNERS
from fwbench.network import build_task
from fwbench.records import RunRecord
from fwbench.registry import Entry
from fwbench.runner import Execution, run_experiment
from fwbench.settings import fields_of, setting
from fwbench.tasks import TASKS
from fwbench.tasks.base import EpisodicTask, SupervisedTask, TaskConfig

NAMES = TASKS.names()
LEARNER_OF = {SupervisedTask: "supervised", EpisodicTask: "a2c"}  # contract -> training loop
MODEL = "lstm"  # every task provides sequences, and an LSTM is a recurrent core


def _mnist_settings(root) -> dict:
    """A small MNIST look-alike: 5,008 training images (the last 5,000 validate), 4 test."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5_008, 28, 28), dtype=np.uint8)
    y = (np.arange(5_008) % 10).astype(np.uint8)
    arrays = {"x_train": x, "y_train": y, "x_test": x[:4].copy(), "y_test": y[:4].copy()}
    for key, (name, _) in mnist.IDX_FILES.items():
        write_idx(root / name, arrays[key])
    return {"data_dir": str(root), "n_train": 8, "n_valid": 4, "n_test": 4}


def _faces_settings(root) -> dict:
    """Three classes of five noisy 20 x 16 images, as a class folder."""
    rng = np.random.default_rng(0)
    for k in range(3):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (16, 20), dtype=np.uint8)).save(
                root / f"c{k}" / f"{i}.png")
    return {"dataset": "folder", "faces_dir": str(root), "size": 16}


# tasks that read files get small generated ones; any other task is checked on small settings
# of its own or on its defaults
SMALL = {"retrieval": lambda root: {"n_train": 64, "n_valid": 16, "n_test": 16},
         "catch": lambda root: {"N": 5, "M": 2},
         "mnist": _mnist_settings, "faces": _faces_settings}


def _config(name: str, root):
    """The task's run configuration on small settings (data files written under root)."""
    return resolve(name, MODEL, SMALL.get(name, lambda root: {})(root))


# ---- the checks, each for one task name (also used on the memory chain below)

def check_contract(name: str) -> None:
    cls = TASKS.get(name)
    kinds = [k for k in LEARNER_OF if issubclass(cls, k)]
    assert len(kinds) == 1, f"{name} must implement exactly one task contract"
    assert cls.learner == LEARNER_OF[kinds[0]] and cls.learner in LEARNERS
    assert dataclasses.is_dataclass(cls.Config) and issubclass(cls.Config, TaskConfig)
    assert cls.summary and cls.provides and set(cls.provides) <= {"sequence", "image"}
    learner_fields = {f.name for f in fields_of(LEARNERS.get(cls.learner).Config)}
    assert set(cls.learner_defaults) <= learner_fields
    if kinds[0] is EpisodicTask:
        assert cls.success.isidentifier() and cls.success.islower()  # it names metrics


def check_worked_example(name: str) -> None:
    module = sys.modules[TASKS.get(name).__module__]
    tests = doctest.DocTestFinder().find(module)
    assert sum(len(t.examples) for t in tests) > 0, f"{module.__name__} has no worked example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in tests:
        runner.run(t)
    assert runner.summarize(verbose=False).failed == 0


def check_supervised_determinism(name: str, root) -> None:
    cfg = _config(name, root)
    a, b = build_task(cfg), build_task(cfg)
    sa, sb = a.splits(3), b.splits(3)
    assert set(sa) == {"train", "valid", "test"}
    for part in sa:
        assert torch.equal(sa[part].x, sb[part].x) and torch.equal(sa[part].y, sb[part].y)
        assert len(sa[part].x) == len(sa[part]) > 0
        assert 0 <= int(sa[part].y.min()) and int(sa[part].y.max()) < a.num_classes
    encoder, size = a.encoder("sequence")
    z = encoder(sa["train"].x[:2])
    assert z.dim() == 3 and z.shape[0] == 2 and z.shape[-1] == size  # [B, T, size]


def _play(env, actions: torch.Tensor) -> list[tuple]:
    """Step with actions [T, n], resetting finished games; every (obs, reward, done)."""
    out = []
    for a in actions:
        obs, reward, done = env.step(a)
        out.append((obs.clone(), reward.clone(), done.clone()))
        env.reset(done)
    return out


def _same(xs: list[tuple], ys: list[tuple]) -> bool:
    return all(torch.equal(x, y) for a, b in zip(xs, ys) for x, y in zip(a, b))


def check_episodic_determinism(name: str, root) -> None:
    task, n = build_task(_config(name, root)), 6
    T = task.episode_length
    gen = torch.Generator().manual_seed(0)
    actions = torch.randint(task.num_actions, (3 * T, n), generator=gen)  # [3T, n]: three episodes
    env = task.batched(env_seeds(0, 0, n))
    assert env.n == n and env.observe()[0].numel() == task.observation_size
    first = _play(env, actions)
    for t, (obs, reward, done) in enumerate(first):  # every episode lasts exactly T steps
        assert bool(done.all()) == ((t + 1) % T == 0) and bool(done.any()) == bool(done.all())
        assert obs.shape[0] == reward.shape[0] == n
        assert task.succeeded(reward, done).dtype == torch.bool
    assert _same(first, _play(task.batched(env_seeds(0, 0, n)), actions))
    assert not _same(first, _play(task.batched(env_seeds(1, 0, n)), actions))
    # a state_dict taken mid-episode continues exactly (what a resumed run relies on)
    a = task.batched(env_seeds(2, 0, n))
    _play(a, actions[:T + 1])
    b = task.batched(env_seeds(5, 0, n))
    b.load_state_dict(a.state_dict())
    assert _same(_play(a, actions[T + 1:]), _play(b, actions[T + 1:]))


def check_determinism(name: str, root) -> None:
    if issubclass(TASKS.get(name), EpisodicTask):
        check_episodic_determinism(name, root)
    else:
        check_supervised_determinism(name, root)


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    check_contract(name)


@pytest.mark.parametrize("name", NAMES)
def test_worked_example_in_docstring(name):
    check_worked_example(name)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name, tmp_path):
    check_determinism(name, tmp_path)


# ---- a second episodic task, defined and registered here as a new task module would be

@dataclasses.dataclass(frozen=True)
class ChainConfig(TaskConfig):
    cues: int = setting(2, "distinct cues (and actions)", low=2)
    delay: int = setting(2, "blank steps between the cue and the choice", low=0)


class BatchedChain:
    """n games: a cue shown at the start, blanks, then a choice rewarded +1 if it names the cue."""

    def __init__(self, cfg: ChainConfig, seeds: Sequence[int], device="cpu"):
        self.cfg, self.n, self.device = cfg, len(seeds), torch.device(device)
        self._rngs = [seeding.np_random(int(s))[0] for s in seeds]
        self.t = torch.zeros(self.n, dtype=torch.long)
        self.cue = torch.zeros(self.n, dtype=torch.long)
        self.reset()

    def reset(self, mask=None):
        idx = range(self.n) if mask is None else mask.nonzero()[:, 0].tolist()
        for i in idx:
            self.cue[i], self.t[i] = int(self._rngs[i].integers(self.cfg.cues)), 0
        return self.observe()

    def step(self, actions):
        self.t = self.t + 1
        done = self.t == self.cfg.delay + 1
        reward = torch.where(actions.cpu() == self.cue, 1.0, -1.0) * done
        return self.observe(), reward.to(self.device), done.to(self.device)

    def observe(self):
        obs = torch.zeros(self.n, self.cfg.cues + 1)
        obs[:, :-1] = torch.nn.functional.one_hot(self.cue, self.cfg.cues) * (self.t == 0)[:, None]
        obs[:, -1] = (self.t == self.cfg.delay).float()  # "choose now"
        return obs.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t.clone(), "cue": self.cue.clone(),
                "rngs": [r.bit_generator.state for r in self._rngs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t, self.cue = state["t"].clone(), state["cue"].clone()
        for rng, s in zip(self._rngs, state["rngs"]):
            rng.bit_generator.state = s


class MemoryChain(EpisodicTask):
    """Remember a cue over a delay.

    >>> env = MemoryChain(ChainConfig(cues=3, delay=1)).batched([0])
    >>> cue = int(env.observe()[0, :3].argmax())
    >>> _ = env.step(torch.tensor([0]))  # the blank step: any action
    >>> env.step(torch.tensor([cue]))[1:]
    (tensor([1.]), tensor([True]))
    """

    Config: ClassVar[type] = ChainConfig
    summary: ClassVar[str] = "remember a cue over a delay, then name it"
    success: ClassVar[str] = "recall"

    @property
    def observation_size(self) -> int:
        return self.cfg.cues + 1

    @property
    def num_actions(self) -> int:
        return self.cfg.cues

    @property
    def episode_length(self) -> int:
        return self.cfg.delay + 1

    def batched(self, seeds, device="cpu") -> BatchedChain:
        return BatchedChain(self.cfg, seeds, device)


@pytest.fixture
def chain(monkeypatch):
    """MemoryChain registered as task "chain" for this test only."""
    monkeypatch.setitem(TASKS._entries, "chain", Entry("chain", f"{__name__}:MemoryChain"))
    return "chain"


def test_a_new_episodic_task_passes_the_checks_and_trains_with_a2c(chain, tmp_path):
    check_contract(chain)
    check_worked_example(chain)
    check_determinism(chain, tmp_path)
    tiny = {"delay": 2, "hidden": 8, "n_envs": 4, "env_steps": 48, "eval_every": 24,
            "log_every": 12, "eval_episodes": 8}
    out = run_experiment(resolve(chain, MODEL, tiny),
                         Execution(results=tmp_path, device="cpu", progress=False))
    assert out.status == "completed" and out.summary["updates"] == 4  # 3 steps x 4 games each
    assert 0.0 <= out.summary["eval_recall_rate"] <= out.summary["best_eval_recall_rate"] <= 1.0
    rows = RunRecord(out.path).read_metrics()
    assert [int(r["step"]) for r in rows if r["metric"] == "recall_rate"
            and r["split"] == "eval"] == [0, 24, 48]
    assert {r["metric"] for r in rows if r["split"] == "train"} >= {"return", "recall_rate"}
    assert not any("catch" in r["metric"] for r in rows)
