"""Advantage actor-critic (A2C) for partially observable tasks, with any recurrent core.

Synchronous A2C stands in for the paper's asynchronous A3C (docs/paper.md §3.4) [C]: `n_envs` games
step in lockstep. The agent is the model plugin's recurrent core with a linear policy head and a
linear value head on its output; it acts one step at a time with `core.step` and carried state,
which `mask_state` resets where an episode ended. Its input at each step is the observation
(flattened) and a one-hot of its own previous action (zeros at an episode's start): a blank
screen hides the paddle too, so only this tells the agent where it is [C].

Reads top to bottom like the recipe: build the task's games and the agent; resume from the
checkpoint if there is one; then repeatedly play `rollout` steps in every game (0: one whole
episode, so returns are never bootstrapped), keeping the graph; compute discounted returns,
bootstrapped from the value of the next observation where an episode is unfinished; take one
Adam step on policy-gradient loss + value loss - entropy bonus, with gradient-norm clipping.
Every `eval_every` environment steps the greedy policy plays a fixed set of episodes; metrics
are written, then the checkpoint that covers them. Steps in the records count environment
steps (all games together).
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from fwbench.config import RunConfig
from fwbench.learners import checkpoint
from fwbench.envs.catch import env_seeds
from fwbench.errors import DivergedError, FwbenchError
from fwbench.models.base import RecurrentCore, mask_state
from fwbench.network import build_model, build_task
from fwbench.progress import TrainProgress
from fwbench.records import RunRecord
from fwbench.settings import setting

TRAIN_STREAM, EVAL_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class A2CConfig:
    seed: int = setting(0, "seed for initialisation, training episodes and action sampling", low=0)
    lr: float = setting(1e-3, "Adam learning rate", low=0.0, paper="[C]")
    n_envs: int = setting(16, "games stepped in parallel", low=1, paper="[C]")
    rollout: int = setting(0, "steps per game per update (0: one whole episode, no bootstrap)",
                           low=0, paper="[C]")
    gamma: float = setting(0.99, "discount factor of the returns", low=0.0, high=1.0, paper="[C]")
    value_coef: float = setting(0.5, "weight of the value loss", low=0.0, paper="[C]")
    entropy_coef: float = setting(0.01, "weight of the entropy bonus", low=0.0, paper="[C]")
    clip: float = setting(1.0, "gradient-norm clipping threshold (0: off)", low=0.0, paper="[C]")
    env_steps: int = setting(3_000_000, "training budget in environment steps (all games)", low=1)
    eval_every: int = setting(50_000, "environment steps between greedy evaluations", low=1)
    eval_episodes: int = setting(512, "episodes per greedy evaluation (the same set each time)",
                                 low=1)
    eval_seed: int = setting(0, "seed of the evaluation episodes (shared by all runs)", low=0)
    log_every: int = setting(10_000, "environment steps between training-metric rows", low=1)


class Agent(nn.Module):
    """[observation, one-hot previous action] -> recurrent core -> policy logits and value."""

    def __init__(self, core: RecurrentCore, num_actions: int):
        super().__init__()
        self.core, self.num_actions = core, num_actions
        self.policy = nn.Linear(core.output_size, num_actions)
        self.value = nn.Linear(core.output_size, 1)
        with torch.no_grad():  # a near-uniform first policy [C]
            self.policy.weight.mul_(0.01)
            self.policy.bias.zero_()

    def initial(self, batch: int, device) -> tuple:
        """(core state, previous action one-hot [B, A]) at the start of episodes."""
        return (self.core.initial_state(batch, device),
                self.core.zeros(batch, self.num_actions, device=device))

    def forward(self, obs: torch.Tensor, carry: tuple):
        """obs[B, ...] -> (logits [B, A], value [B], new core state)."""
        state, prev = carry
        x = torch.cat([obs.flatten(1), prev], dim=1)  # [B, obs_size + A]
        y, state = self.core.step(x, state)
        return self.policy(y), self.value(y)[:, 0], state

    def next_carry(self, state, action: torch.Tensor, done: torch.Tensor) -> tuple:
        """Carry into the next step; games whose episode ended start from zeros."""
        keep = ~done
        prev = F.one_hot(action, self.num_actions).to(self.policy.weight.dtype)
        return mask_state(state, keep), prev * keep[:, None]


def detach(state):
    """Cut the graph at a rollout boundary (truncated backpropagation through time)."""
    if isinstance(state, tuple):
        return tuple(detach(s) for s in state)
    return state.detach()


def discounted_returns(rewards, dones, bootstrap, gamma: float) -> torch.Tensor:
    """R_t = r_t + γ R_{t+1}, restarting at 0 after an episode's end; R_T = bootstrap.
    rewards, dones [T, B], bootstrap [B] -> returns [T, B]."""
    out, R = [], bootstrap
    for t in reversed(range(rewards.shape[0])):
        R = rewards[t] + gamma * R * (~dones[t])
        out.append(R)
    return torch.stack(out[::-1])


def a2c_loss(logits, values, actions, returns, c: A2CConfig):
    """Policy gradient with advantage R - V, value regression, entropy bonus; [T, B] inputs."""
    logp = F.log_softmax(logits, dim=-1)  # [T, B, A]
    taken = logp.gather(-1, actions[..., None])[..., 0]
    advantage = returns - values
    policy_loss = -(taken * advantage.detach()).mean()
    value_loss = 0.5 * advantage.pow(2).mean()
    entropy = -(logp.exp() * logp).sum(-1).mean()
    loss = policy_loss + c.value_coef * value_loss - c.entropy_coef * entropy
    return loss, {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                  "entropy": entropy.item()}


@torch.no_grad()
def evaluate(agent: Agent, task, c: A2CConfig, device) -> tuple[float, float]:
    """(mean return, catch rate) of the greedy policy over the fixed evaluation episodes."""
    env = task.batched(env_seeds(c.eval_seed, EVAL_STREAM, c.eval_episodes), device)
    obs, carry = env.reset(), agent.initial(env.n, device)
    total = torch.zeros(env.n, device=device)
    caught = torch.zeros(env.n, dtype=torch.bool, device=device)
    finished = torch.zeros(env.n, dtype=torch.bool, device=device)
    while not bool(finished.all()):
        logits, _, state = agent(obs, carry)
        action = logits.argmax(-1)
        obs, reward, done = env.step(action)
        total += reward * ~finished
        caught |= done & ~finished & (reward > 0)
        finished |= done
        carry = agent.next_carry(state, action, done)
        obs = env.reset(done) if bool(done.any()) else obs
    return total.mean().item(), caught.float().mean().item()


@dataclasses.dataclass
class Rollout:
    """T steps of every game: the graph-carrying policy outputs, and where the games are now."""

    logits: torch.Tensor  # [T, B, A]
    values: torch.Tensor  # [T, B]
    actions: torch.Tensor  # [T, B]
    rewards: torch.Tensor  # [T, B]
    dones: torch.Tensor  # [T, B]
    obs: torch.Tensor  # the next observation of every game
    carry: tuple  # the agent's carry into that observation
    ep_return: torch.Tensor  # [B] running return of each game's unfinished episode
    episodes: int  # episodes finished during the rollout
    return_sum: float  # and the sum of their returns
    catches: int  # and how many of them ended in a catch


def play(agent: Agent, env, obs, carry, ep_return, T: int, gen: torch.Generator) -> Rollout:
    """Sample T actions in every game from the agent's policy, resetting finished games."""
    carry = detach(carry)
    logits, values, actions, rewards, dones = [], [], [], [], []
    episodes, return_sum, catches = 0, 0.0, 0
    for _ in range(T):
        lg, value, state = agent(obs, carry)
        action = torch.multinomial(F.softmax(lg.detach(), -1), 1, generator=gen)[:, 0]
        obs, reward, done = env.step(action)
        for seq, item in zip((logits, values, actions, rewards, dones),
                             (lg, value, action, reward, done)):
            seq.append(item)
        ep_return = ep_return + reward
        if bool(done.any()):
            episodes += int(done.sum())
            return_sum += ep_return[done].sum().item()
            catches += int((done & (reward > 0)).sum())
            ep_return = ep_return * ~done
            obs = env.reset(done)
        carry = agent.next_carry(state, action, done)
    return Rollout(torch.stack(logits), torch.stack(values), torch.stack(actions),
                   torch.stack(rewards), torch.stack(dones), obs, carry, ep_return, episodes,
                   return_sum, catches)


def update(agent: Agent, opt: torch.optim.Optimizer, roll: Rollout, c: A2CConfig):
    """One Adam step on the rollout's A2C loss; (loss, its parts). A non-finite loss is
    returned without a step, for the caller to stop on."""
    bootstrap = torch.zeros_like(roll.ep_return)  # V(next observation) where episodes go on
    if not bool(roll.dones[-1].all()):
        with torch.no_grad():
            bootstrap = agent(roll.obs, roll.carry)[1]
    returns = discounted_returns(roll.rewards, roll.dones, bootstrap, c.gamma)
    loss, parts = a2c_loss(roll.logits, roll.values, roll.actions, returns, c)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        return loss_value, parts
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if c.clip > 0:
        torch.nn.utils.clip_grad_norm_(agent.parameters(), c.clip)
    opt.step()
    return loss_value, parts


@dataclasses.dataclass
class _State:
    """Everything a checkpoint restores besides weights, games and carried state."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    elapsed: float = 0.0
    eval_return: float = math.nan
    eval_catch_rate: float = math.nan
    best_catch_rate: float = -math.inf
    best_step: int = 0


class _Window:
    """Training statistics accumulated between metric rows."""

    def __init__(self):
        self.episodes, self.returns, self.catches, self.updates = 0, 0.0, 0, 0
        self.parts: dict[str, float] = {}

    def add_update(self, loss: float, parts: dict[str, float]) -> None:
        self.updates += 1
        for k, v in {"loss": loss, **parts}.items():
            self.parts[k] = self.parts.get(k, 0.0) + v

    def recent(self) -> dict[str, float]:
        """Mean return and catch rate of the episodes finished in this window (for display)."""
        if not self.episodes:
            return {}
        return {"return": self.returns / self.episodes, "catch": self.catches / self.episodes}

    def rows(self, step: int, elapsed: float) -> list[tuple]:
        out = [(step, "train", k, v / self.updates, elapsed) for k, v in self.parts.items()]
        if self.episodes:
            out += [(step, "train", "return", self.returns / self.episodes, elapsed),
                    (step, "train", "catch_rate", self.catches / self.episodes, elapsed)]
        return out if self.updates else []


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]."""
    return before // every != after // every


class A2CLearner:
    Config = A2CConfig
    summary = "synchronous advantage actor-critic (A2C) with a recurrent agent, for RL tasks"

    def __init__(self, cfg: RunConfig, record: RunRecord, device: torch.device,
                 progress: bool = True):
        self.cfg, self.c, self.record, self.device = cfg, cfg.learner_cfg, record, device
        self.show_progress = progress

    # ---- checkpoints (the same conventions as the supervised learner)
    def _save(self, path, payload) -> None:
        checkpoint.save(path, payload)

    def _load(self, path) -> dict:
        return checkpoint.load(path, self.record.path, self.device)

    def build(self):
        """The task and the agent, initialised from the seed."""
        task = build_task(self.cfg)
        torch.manual_seed(self.c.seed)
        core = build_model(self.cfg, task.observation_size + task.num_actions)
        if not isinstance(core, RecurrentCore):
            raise FwbenchError(f"model {self.cfg.model!r} is not a recurrent core; the a2c "
                               "learner needs one (step with carried state)")
        return task, Agent(core, task.num_actions).to(self.device)

    def _evaluate(self, agent, task, st: _State, elapsed: float) -> list[tuple]:
        """Greedy evaluation rows; keeps the best weights in best.pt."""
        agent.eval()
        st.eval_return, st.eval_catch_rate = evaluate(agent, task, self.c, self.device)
        agent.train()
        if st.eval_catch_rate > st.best_catch_rate:
            st.best_catch_rate, st.best_step = st.eval_catch_rate, st.env_steps
            self._save(self.record.best_path, agent.state_dict())
        return [(st.env_steps, "eval", "return", st.eval_return, elapsed),
                (st.env_steps, "eval", "catch_rate", st.eval_catch_rate, elapsed)]

    def train(self) -> dict:
        c, rec, dev = self.c, self.record, self.device
        task, agent = self.build()
        opt = torch.optim.Adam(agent.parameters(), lr=c.lr)
        env = task.batched(env_seeds(c.seed, TRAIN_STREAM, c.n_envs), dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(c.seed)  # action sampling, restored exactly on resume
        carry, st = agent.initial(c.n_envs, dev), _State()
        ep_return = torch.zeros(c.n_envs, device=dev)  # running return of each game's episode
        fresh = not rec.checkpoint_path.exists()
        if not fresh:
            ckpt = self._load(rec.checkpoint_path)
            agent.load_state_dict(ckpt["agent"])
            opt.load_state_dict(ckpt["optim"])
            env.load_state_dict(ckpt["env"])
            gen.set_state(ckpt["gen"])
            carry, ep_return, st = ckpt["carry"], ckpt["ep_return"], _State(**ckpt["state"])
        rec.truncate_metrics(-1 if fresh else st.env_steps)  # -1: a fresh start keeps no row

        obs, T = env.observe(), c.rollout or task.episode_length
        t0 = time.perf_counter()
        elapsed = lambda: st.elapsed + time.perf_counter() - t0  # noqa: E731
        pending, win, shown = [], _Window(), {}
        if fresh:  # the untrained agent: the curves' origin
            rec.append_metrics(self._evaluate(agent, task, st, 0.0))

        title = (f"{self.cfg.task}/{self.cfg.model} {task.describe()} "
                 f"h={self.cfg.model_cfg.hidden}")
        with TrainProgress(title, c.env_steps, self.show_progress, unit="env steps") as bar:
            bar.update(st.env_steps)
            while st.env_steps < c.env_steps:
                before = st.env_steps
                # ---- play T steps in every game (keeping the graph), then one update
                roll = play(agent, env, obs, carry, ep_return, T, gen)
                obs, carry, ep_return = roll.obs, roll.carry, roll.ep_return
                st.env_steps += T * c.n_envs
                st.episodes += roll.episodes
                win.episodes += roll.episodes
                win.returns += roll.return_sum
                win.catches += roll.catches
                loss_value, parts = update(agent, opt, roll, c)
                if not math.isfinite(loss_value):
                    rec.append_metrics(pending)
                    raise DivergedError(st.env_steps, loss_value)
                st.updates += 1
                win.add_update(loss_value, parts)

                # ---- metrics, evaluation, then the checkpoint that covers them
                last = st.env_steps >= c.env_steps
                if _crossed(before, st.env_steps, c.log_every) or last:
                    shown = win.recent() or shown
                    pending += win.rows(st.env_steps, elapsed())
                    win = _Window()
                if _crossed(before, st.env_steps, c.eval_every) or last:
                    pending += win.rows(st.env_steps, elapsed())
                    win = _Window()
                    pending += self._evaluate(agent, task, st, elapsed())
                    rec.append_metrics(pending)
                    pending.clear()
                    st.elapsed = elapsed()
                    self._save(rec.checkpoint_path, {
                        "agent": agent.state_dict(), "optim": opt.state_dict(),
                        "env": env.state_dict(), "gen": gen.get_state(), "carry": detach(carry),
                        "ep_return": ep_return, "state": dataclasses.asdict(st)})
                    t0 = time.perf_counter()
                bar.update(st.env_steps, episodes=st.episodes, **shown,
                           eval_catch=st.eval_catch_rate)
        return self._summary(agent, task, st)

    def _summary(self, agent: Agent, task, st: _State) -> dict:
        return {"steps": st.env_steps, "env_steps": st.env_steps, "updates": st.updates,
                "episodes": st.episodes, "eval_return": st.eval_return,
                "eval_catch_rate": st.eval_catch_rate,
                "best_eval_catch_rate": st.best_catch_rate, "best_eval_step": st.best_step,
                "train_wall_s": round(st.elapsed, 3),
                "env_steps_per_s": round(st.env_steps / st.elapsed, 1) if st.elapsed else None,
                "params": sum(p.numel() for p in agent.parameters()),
                "model_params": agent.core.num_parameters(),
                "state_size": agent.core.state_size(task.episode_length)}
