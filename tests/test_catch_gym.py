"""Catch through gymnasium: the registered id, the checker, the vector twin == SyncVectorEnv."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence

from fwbench.envs import CATCH_ID
from fwbench.envs.catch import CatchEnv, CatchRules
from fwbench.envs.catch_gym import CatchVectorEnv
from fwbench.errors import FwbenchError

RULES = [dict(N=24, M=5), dict(N=7, M=3, paddle=2, motion="diagonal")]


def _pair(num_envs: int, **rules):
    """The batched twin and SyncVectorEnv over single games, both made from the registered id."""
    twin = gymnasium.make_vec(CATCH_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                              **rules)
    sync = gymnasium.make_vec(CATCH_ID, num_envs=num_envs, vectorization_mode="sync", **rules)
    return twin, sync


def _same_steps(twin, sync, rng, steps: int) -> None:
    for t in range(steps):
        actions = rng.integers(3, size=twin.num_envs)
        got, want = twin.step(actions), sync.step(actions)
        assert data_equivalence(got, want, exact=True), f"step {t}: {got[1:]} != {want[1:]}"


def test_make_builds_the_rules_from_keywords():
    env = gymnasium.make(CATCH_ID, N=24, M=5)
    assert isinstance(env.unwrapped, CatchEnv)
    assert env.unwrapped.rules == CatchRules(N=24, M=5)
    assert env.spec.kwargs == {"N": 24, "M": 5}
    frame, info = env.reset(seed=0)
    assert frame.shape == (24, 24) and info == {}
    assert gymnasium.make(CATCH_ID).unwrapped.rules == CatchRules()  # defaults: N = 16, M = 3


def test_module_prefixed_id_registers_without_importing_fwbench():
    code = ("import gymnasium; env = gymnasium.make('fwbench.envs:fwbench/Catch-v0', N=9, M=2); "
            "print(env.unwrapped.rules.N, env.observation_space.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["9", "(9,", "9)"]


@pytest.mark.parametrize("kwargs, words", [
    (dict(N=24, width=3), "unknown Catch rule 'width': expected one of N, M, paddle, motion"),
    (dict(N=2), "invalid N 2"),
    (dict(motion="zigzag"), "invalid motion 'zigzag'"),
])
def test_bad_rules_are_one_line_errors(kwargs, words):
    for make in (lambda: gymnasium.make(CATCH_ID, **kwargs),
                 lambda: gymnasium.make_vec(CATCH_ID, num_envs=2, **kwargs)):
        with pytest.raises(FwbenchError, match=words) as e:
            make()
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("render_mode", [None, "ansi"])
@pytest.mark.parametrize("rules", RULES)
def test_registered_env_passes_the_gymnasium_checker(rules, render_mode):
    env = gymnasium.make(CATCH_ID, render_mode=render_mode, **rules)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning fails the test
        check_env(env.unwrapped, skip_render_check=render_mode is None)


def test_make_vec_uses_the_batched_twin_with_batched_spaces():
    twin, sync = _pair(16, N=24, M=5)
    assert isinstance(twin.unwrapped, CatchVectorEnv)
    assert twin.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
    for name in ("single_observation_space", "single_action_space", "observation_space",
                 "action_space"):
        assert getattr(twin, name) == getattr(sync, name), name
    obs, _ = twin.reset(seed=0)
    assert twin.observation_space.contains(obs)


@pytest.mark.parametrize("rules", RULES)
def test_twin_plays_as_sync_vector_env_across_autoresets(rules):
    twin, sync = _pair(6, **rules)
    for seed in (3, [11, 0, 5, 7, 2, 9]):
        assert data_equivalence(twin.reset(seed=seed), sync.reset(seed=seed), exact=True)
        # three episodes and more: each ends with caught/_caught and a next-step autoreset
        _same_steps(twin, sync, np.random.default_rng(1), 3 * rules["N"] + 2)


def test_twin_matches_sync_after_a_partial_reset_puts_games_out_of_phase():
    twin, sync = _pair(4, N=6, M=2)
    rng = np.random.default_rng(2)
    twin.reset(seed=8), sync.reset(seed=8)
    _same_steps(twin, sync, rng, 2)
    mask = np.array([True, False, True, False])
    got = twin.reset(seed=40, options={"reset_mask": mask})
    assert data_equivalence(got, sync.reset(seed=40, options={"reset_mask": mask}), exact=True)
    _same_steps(twin, sync, rng, 30)  # games now end on different steps


def test_unseeded_reset_continues_the_seeded_generators():
    twin, sync = _pair(3, N=5, M=1)
    twin.reset(seed=1), sync.reset(seed=1)
    rng = np.random.default_rng(0)
    _same_steps(twin, sync, rng, 4)
    assert data_equivalence(twin.reset(), sync.reset(), exact=True)
    _same_steps(twin, sync, rng, 9)


def test_bad_actions_and_options_are_refused():
    twin = CatchVectorEnv(num_envs=3, N=5, M=1)
    twin.reset(seed=0)
    for actions in ([0, 1], [0, 1, 3], [0.0, 1.0, 2.0]):
        with pytest.raises(ValueError, match="invalid actions"):
            twin.step(actions)
    with pytest.raises(ValueError, match="unknown reset options"):
        twin.reset(options={"column": 2})
    with pytest.raises(ValueError, match="3 games"):
        twin.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="reset_mask"):
        twin.reset(options={"reset_mask": np.zeros(3, dtype=bool)})
