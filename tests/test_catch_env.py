"""Catch: hand-checked trajectories, blanking, the gymnasium checker, batched == gymnasium."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import fwbench.tasks.catch
from fwbench.envs.catch import (LEFT, RIGHT, STAY, BatchedCatch, CatchEnv, CatchRules,
                                draw_start, env_seeds)


def _ball(frame) -> tuple[int, int] | None:
    """(row, column) of the ball in a visible frame (the paddle is on the bottom row only)."""
    rows, cols = np.nonzero(np.asarray(frame)[:-1])
    return (int(rows[0]), int(cols[0])) if len(rows) else None


def _paddle(frame) -> list[int]:
    return np.nonzero(np.asarray(frame)[-1])[0].tolist()


def _play(env: CatchEnv, actions):
    out = []
    for a in actions:
        frame, reward, terminated, truncated, info = env.step(a)
        assert not truncated
        out.append((frame, reward, terminated, info))
    return out


def test_straight_fall_caught_after_moving_left():
    env = CatchEnv(CatchRules(N=5, M=5))
    frame, info = env.reset(options={"column": 0})
    assert frame.shape == (5, 5) and frame.dtype == np.float32 and info == {}
    assert _ball(frame) == (0, 0) and _paddle(frame) == [2]  # paddle starts in the middle
    steps = _play(env, [LEFT, LEFT, STAY, STAY])
    assert [_paddle(f) for f, *_ in steps] == [[1], [0], [0], [0]]
    assert [_ball(f) for f, *_ in steps[:3]] == [(1, 0), (2, 0), (3, 0)]
    assert steps[3][0][4, 0] == 1.0 and steps[3][0].sum() == 1.0  # ball on the paddle's cell
    assert [r for _, r, _, _ in steps] == [0.0, 0.0, 0.0, 1.0]
    assert [t for _, _, t, _ in steps] == [False, False, False, True]
    assert steps[3][3] == {"caught": True}
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(STAY)


def test_miss_and_paddle_stops_at_the_walls():
    env = CatchEnv(CatchRules(N=5, M=5, paddle=2))
    frame, _ = env.reset(options={"column": 4})
    assert _paddle(frame) == [1, 2]  # left edge (5 - 2) // 2
    steps = _play(env, [LEFT, LEFT, LEFT, LEFT])
    assert [_paddle(f) for f, *_ in steps[:3]] == [[0, 1]] * 3  # pressed against the left wall
    assert _paddle(steps[3][0]) == [0, 1, 4]  # the ball landed on column 4
    assert [r for _, r, _, _ in steps] == [0.0, 0.0, 0.0, -1.0] and steps[3][3]["caught"] is False
    env.reset(options={"column": 4})
    steps = _play(env, [RIGHT, RIGHT, RIGHT, RIGHT])
    assert _paddle(steps[-1][0]) == [3, 4] and steps[-1][1] == 1.0  # stopped at the right wall


def test_diagonal_ball_bounces_off_the_side_walls():
    env = CatchEnv(CatchRules(N=5, M=5, motion="diagonal"))
    env.reset(options={"column": 1, "direction": -1})
    steps = _play(env, [STAY] * 3)
    assert [_ball(f) for f, *_ in steps] == [(1, 0), (2, 1), (3, 2)]
    env.reset(options={"column": 3, "direction": 1})
    steps = _play(env, [STAY] * 4)
    assert [_ball(f) for f, *_ in steps[:3]] == [(1, 4), (2, 3), (3, 2)]
    assert steps[3][1] == -1.0  # lands on column 1; the paddle stayed on 2


def test_screen_goes_blank_after_M_frames():
    env = CatchEnv(CatchRules(N=6, M=2))
    first, _ = env.reset(seed=3)
    frames = [first] + [f for f, *_ in _play(env, [STAY] * 5)]
    assert [float(f.sum()) for f in frames[:2]] == [2.0, 2.0]  # ball and paddle
    assert all(float(f.sum()) == 0.0 for f in frames[2:])
    env = CatchEnv(CatchRules(N=6, M=6))
    env.reset(seed=3)
    assert all(float(f.sum()) > 0 for f, *_ in _play(env, [STAY] * 5))


def test_bad_actions_and_early_steps_are_refused():
    env = CatchEnv(CatchRules(N=5))
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(STAY)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action 3"):
        env.step(3)


@pytest.mark.parametrize("motion", ["straight", "diagonal"])
@pytest.mark.filterwarnings("ignore:.*not having a spec")  # made directly, not by gym.make
def test_gymnasium_env_checker_passes(motion):
    check_env(CatchEnv(CatchRules(N=7, M=3, paddle=2, motion=motion)), skip_render_check=False)


def test_start_draws_cover_every_column_and_direction():
    rules = CatchRules(N=6, motion="diagonal")
    draws = {draw_start(np.random.default_rng(s), rules) for s in range(200)}
    assert {c for c, _ in draws} == set(range(6)) and {d for _, d in draws} == {-1, 1}
    assert len(set(env_seeds(0, 0, 50)) | set(env_seeds(0, 1, 50))) == 100


@pytest.mark.parametrize("rules", [CatchRules(N=5, M=2), CatchRules(N=7, M=3, paddle=3),
                                   CatchRules(N=6, M=6, motion="diagonal"),
                                   CatchRules(N=8, M=1, paddle=2, motion="diagonal")])
def test_batched_equals_gymnasium(rules):
    """Same seeds, same actions: the same frames, rewards and ends, over several episodes."""
    seeds = [0, 1, 7, 12345]
    gyms = [CatchEnv(rules) for _ in seeds]
    expect = np.stack([e.reset(seed=s)[0] for e, s in zip(gyms, seeds)])
    batched = BatchedCatch(rules, seeds)
    np.testing.assert_array_equal(batched.observe().numpy(), expect)
    rng = np.random.default_rng(0)
    for _ in range(3 * rules.episode_length + 2):
        actions = rng.integers(0, 3, size=len(seeds))
        steps = [e.step(int(a)) for e, a in zip(gyms, actions)]
        obs, reward, done = batched.step(torch.from_numpy(actions))
        np.testing.assert_array_equal(obs.numpy(), np.stack([s[0] for s in steps]))
        assert reward.tolist() == [s[1] for s in steps]
        assert done.tolist() == [s[2] for s in steps]
        if done.any():
            obs = batched.reset(done)
            for i in np.nonzero(done.numpy())[0]:
                np.testing.assert_array_equal(obs[i].numpy(), gyms[i].reset()[0])


@pytest.mark.parametrize("rules", [CatchRules(N=6, M=3, motion="diagonal"),
                                   CatchRules(N=5, M=5, paddle=2)])
def test_batched_equals_gymnasium_with_staggered_episodes(rules):
    """Games restarted at different times (some mid-episode, some visible while others are
    blank) and a state carried into a new batch: still frame for frame the gymnasium games."""
    seeds = [3, 1, 4, 1, 5]
    gyms = [CatchEnv(rules) for _ in seeds]
    for e, s in zip(gyms, seeds):
        e.reset(seed=s)
    batched = BatchedCatch(rules, seeds)
    rng = np.random.default_rng(1)
    for step in range(4 * rules.episode_length):
        if step == 2 * rules.episode_length:  # continue in a new batch from the saved state
            state, batched = batched.state_dict(), BatchedCatch(rules, [0] * len(seeds))
            batched.load_state_dict(state)
        restart = torch.from_numpy(rng.random(len(seeds)) < 0.15)
        if restart.any():
            obs = batched.reset(restart)
            for i in np.nonzero(restart.numpy())[0]:
                gyms[i].reset()
            np.testing.assert_array_equal(obs.numpy(), np.stack([e._frame() for e in gyms]))
        actions = rng.integers(0, 3, size=len(seeds))
        steps = [e.step(int(a)) for e, a in zip(gyms, actions)]
        obs, reward, done = batched.step(torch.from_numpy(actions))
        np.testing.assert_array_equal(obs.numpy(), np.stack([s[0] for s in steps]))
        assert reward.tolist() == [s[1] for s in steps]
        assert done.tolist() == [s[2] for s in steps]
        if done.any():
            batched.reset(done)
            for i in np.nonzero(done.numpy())[0]:
                gyms[i].reset()


def test_batched_state_round_trip_continues_identically():
    rules = CatchRules(N=6, M=3, motion="diagonal")
    a = BatchedCatch(rules, env_seeds(4, 0, 5))
    actions = torch.tensor([[0, 1, 2, 1, 0]] * 3)
    for act in actions:
        a.step(act)
    b = BatchedCatch(rules, env_seeds(9, 0, 5))
    b.load_state_dict(a.state_dict())
    for _ in range(4):  # through an episode's end and the reset that draws new balls
        oa, ra, da = a.step(actions[0])
        ob, rb, db = b.step(actions[0])
        assert torch.equal(oa, ob) and torch.equal(ra, rb) and torch.equal(da, db)
        if da.any():
            assert torch.equal(a.reset(da), b.reset(db))
    with pytest.raises(ValueError):
        BatchedCatch(rules, [1, 2]).load_state_dict(a.state_dict())


def test_batched_refuses_to_step_finished_episodes():
    env = BatchedCatch(CatchRules(N=3), [0, 1])
    env.step(torch.tensor([1, 1]))
    _, _, done = env.step(torch.tensor([1, 1]))
    assert done.all()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.tensor([1, 1]))
    env.reset(torch.tensor([True, False]))
    assert env.t.tolist() == [0, 2]


def test_task_docstring_example():
    result = doctest.testmod(fwbench.tasks.catch)
    assert result.attempted > 0 and result.failed == 0
