"""Advantage actor-critic (A2C) for episodic tasks (`EpisodicTask`), with any recurrent core.

Synchronous A2C stands in for the paper's asynchronous A3C (docs/paper.md §3.4) [C]:
`n_envs` games step in lockstep. The agent (`fwbench.agent`) is the model plugin's recurrent
core with a linear policy head and a linear value head on its output; it plays with
`fwbench.learners.rollout`.
Metrics and summary keys are named after the task's success measure (`task.success`, e.g.
"catch": `eval/catch_rate`, `eval_catch_rate`).

Reads top to bottom like the recipe: build the task's games and the agent; resume from the
checkpoint if there is one; then repeatedly play `rollout` steps in every game (0: one whole
episode, so returns are never bootstrapped), for the update either keeping the graph of the
steps or replaying them through the core's sequence path (`update_path`, `Agent.replay`);
compute discounted returns, bootstrapped from the value of the next observation where an
episode is unfinished; take one Adam (or RMSProp) step on policy-gradient loss + value loss -
entropy bonus, with gradient-norm clipping.

A3C's recipe (Mnih et al. 2016), as far as a synchronous learner can follow it: n-step
bootstrapped returns (`rollout` = t_max > 0; the recurrent state is carried across rollouts,
the graph cut at their boundaries) and RMSProp (`optimizer = "rmsprop"`) with A3C's decay
α = 0.99. A3C shares RMSProp's statistics between its asynchronous actors; here one optimizer
serves every game, so its statistics are shared by construction.
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

from fwbench.agent import Agent, detach
from fwbench.errors import DivergedError
from fwbench.learners.base import Learner, setup_cpu
from fwbench.errors import FwbenchError
from fwbench.learners.optim import Adam, RMSprop, clip_grad_norm
from fwbench.learners.rollout import TRAIN_STREAM, Rollout, evaluate, play
from fwbench.envs.seeds import env_seeds
from fwbench.network import build_agent, build_task
from fwbench.progress import TrainProgress
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class A2CConfig:
    seed: int = setting(0, "seed for initialisation, training episodes and action sampling", low=0)
    lr: float = setting(1e-3, "learning rate (of Adam or RMSProp)", low=0.0, paper="[C]")
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
    optimizer: str = setting("adam", "adam, or rmsprop as A3C (Mnih et al. 2016) used it",
                             choices=("adam", "rmsprop"), paper="[C]", added=True)
    rms_alpha: float = setting(0.99, "RMSProp's decay α of the mean squared gradient (A3C: "
                               "0.99; optimizer = rmsprop only)", low=0.0, high=1.0,
                               paper="[C]", added=True)
    rms_eps: float = setting(0.1, "RMSProp's ε added to the root mean square (0.1, as A3C "
                             "implementations whose loss is a sum over steps; this loss is a "
                             "mean, for which 0.1 swamps the gradient's scale and 1e-5 suits, "
                             "as OpenAI Baselines' A2C; the A3C paper gives none; optimizer = "
                             "rmsprop only)", low=0.0, paper="[C]", added=True)
    update_path: str = setting(
        "auto", "how an update computes the rollout's policy and values: replay (again, "
        "through the core's sequence path, one call per stretch between episode ends), steps "
        "(the graph kept while playing: the reference, and the path of runs recorded before "
        "this setting), auto (replay for cores whose sequence path is a faster form than their "
        "step, the IRNN, LSTM and GRU stepped); the two agree at rounding level per update",
        choices=("auto", "replay", "steps"), added=True)
    obs_encoder: int = setting(0, "units of a Linear+ReLU layer on the observation before the "
                               "core, the same for every model (0: none, the paper does not "
                               "say)", low=0, high=4096, paper="[C]", added=True)

    def validate(self) -> None:
        if not 0.0 <= self.rms_alpha < 1.0:  # α = 1 would never take in a gradient
            raise FwbenchError(f"invalid value {self.rms_alpha!r} for rms_alpha: expected a "
                               "number in [0, 1)")
        if self.rms_eps <= 0.0:  # the root mean square of a zero gradient is 0
            raise FwbenchError(f"invalid value {self.rms_eps!r} for rms_eps: expected a "
                               "number > 0")
        given = [n for n, v in (("rms_alpha", self.rms_alpha), ("rms_eps", self.rms_eps))
                 if v != _DEFAULTS[n]]
        if self.optimizer != "rmsprop" and given:  # two ids for one experiment otherwise
            raise FwbenchError(f"{given[0]} applies to optimizer = rmsprop only; this run "
                               f"uses {self.optimizer}")

    def make_optimizer(self, params):
        """The optimizer these settings name, over `params`."""
        if self.optimizer == "rmsprop":
            return RMSprop(params, lr=self.lr, alpha=self.rms_alpha, eps=self.rms_eps)
        return Adam(params, lr=self.lr)

    def replays(self, core) -> bool:
        """Whether updates replay rollouts through `core`'s sequence path (`update_path`)."""
        return self.update_path == "replay" or (self.update_path == "auto" and
                                                core.replay_update)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(A2CConfig)}


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


def rollout_returns(agent: Agent, roll: Rollout, gamma: float) -> torch.Tensor:
    """The n-step returns of a rollout [T, B], bootstrapped from V(next observation) in the
    games whose episode goes on past it (Mnih et al. 2016, Algorithm S3)."""
    bootstrap = torch.zeros_like(roll.ep_return)
    if not bool(roll.dones[-1].all()):
        with torch.no_grad():
            bootstrap = agent(roll.obs, roll.carry)[1]
    return discounted_returns(roll.rewards, roll.dones, bootstrap, gamma)


def update(agent: Agent, opt, roll: Rollout, c: A2CConfig):
    """One optimizer step on the rollout's A2C loss; (loss, its parts). A non-finite loss is
    returned without a step, for the caller to stop on."""
    returns = rollout_returns(agent, roll, c.gamma)
    logits, values = roll.policy(agent)
    loss, parts = a2c_loss(logits, values, roll.actions, returns, c)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        return loss_value, parts
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if c.clip > 0:
        clip_grad_norm(agent.parameters(), c.clip)
    opt.step()
    return loss_value, parts


@dataclasses.dataclass
class _State:
    """Everything a checkpoint restores besides weights, games and carried state."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # the process's CPU seconds in training (all its threads)
    eval_return: float = math.nan
    eval_success: float = math.nan  # success rate of the latest evaluation
    best_success: float = -math.inf
    best_step: int = 0
    eval_sum: float = 0.0  # of every evaluation's success rate: the curve's mean at the end
    eval_count: int = 0

    @classmethod
    def restore(cls, saved: dict) -> "_State":
        """From a checkpoint's state, also one written when these fields were named after
        Catch (a run interrupted then resumes under this code)."""
        renamed = {"eval_catch_rate": "eval_success", "best_catch_rate": "best_success"}
        st = cls(**{renamed.get(k, k): v for k, v in saved.items()})
        if "eval_count" not in saved:  # the evaluations before it are not in this checkpoint
            st.eval_sum = math.nan
        return st


class _Window:
    """Training statistics accumulated between metric rows."""

    def __init__(self, success: str):
        self.success = success  # the task's success measure, e.g. "catch"
        self.episodes, self.returns, self.successes, self.updates = 0, 0.0, 0, 0
        self.parts: dict[str, float] = {}

    def add_rollout(self, roll: Rollout) -> None:
        self.episodes += roll.episodes
        self.returns += roll.return_sum
        self.successes += roll.successes

    def add_update(self, loss: float, parts: dict[str, float]) -> None:
        self.updates += 1
        for k, v in {"loss": loss, **parts}.items():
            self.parts[k] = self.parts.get(k, 0.0) + v

    def recent(self) -> dict[str, float]:
        """Mean return and success rate of the episodes finished in this window (display)."""
        if not self.episodes:
            return {}
        return {"return": self.returns / self.episodes,
                self.success: self.successes / self.episodes}

    def rows(self, step: int, elapsed: float) -> list[tuple]:
        out = [(step, "train", k, v / self.updates, elapsed) for k, v in self.parts.items()]
        if self.episodes:
            out += [(step, "train", "return", self.returns / self.episodes, elapsed),
                    (step, "train", f"{self.success}_rate", self.successes / self.episodes,
                     elapsed)]
        return out if self.updates else []


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]."""
    return before // every != after // every


class A2CLearner(Learner):
    Config = A2CConfig
    summary = "synchronous advantage actor-critic (A2C) with a recurrent agent, for RL tasks"

    def build(self):
        """The task and the agent, initialised from the seed."""
        task = build_task(self.cfg)
        return task, build_agent(self.cfg, task).to(self.device)

    def _evaluate(self, agent, task, st: _State, elapsed: float) -> list[tuple]:
        """Greedy evaluation rows; keeps the best weights in best.pt."""
        agent.eval()
        st.eval_return, st.eval_success = evaluate(agent, task, self.c.eval_episodes,
                                                   self.c.eval_seed, self.device)
        agent.train()
        st.eval_sum, st.eval_count = st.eval_sum + st.eval_success, st.eval_count + 1
        if st.eval_success > st.best_success:
            st.best_success, st.best_step = st.eval_success, st.env_steps
            self.save(self.record.best_path, agent.state_dict())
        return [(st.env_steps, "eval", "return", st.eval_return, elapsed),
                (st.env_steps, "eval", f"{task.success}_rate", st.eval_success, elapsed)]

    def train(self) -> dict:
        c, rec, dev = self.c, self.record, self.device
        task, agent = self.build()
        opt = c.make_optimizer(agent.parameters())
        env = task.batched(env_seeds(c.seed, TRAIN_STREAM, c.n_envs), dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(c.seed)  # action sampling, restored exactly on resume
        carry, st = agent.initial(c.n_envs, dev), _State()
        ep_return = torch.zeros(c.n_envs, device=dev)  # running return of each game's episode
        ckpt = self.resume()
        if ckpt is not None:
            agent.load_state_dict(ckpt["agent"])
            opt.load_state_dict(ckpt["optim"])
            env.load_state_dict(ckpt["env"])
            gen.set_state(ckpt["gen"])
            carry, ep_return, st = ckpt["carry"], ckpt["ep_return"], _State.restore(ckpt["state"])
        rec.truncate_metrics(-1 if ckpt is None else st.env_steps)  # -1: a fresh start keeps none
        self.start_tracking(-1 if ckpt is None else st.env_steps)

        obs, T = env.observe(), c.rollout or task.episode_length
        graph = not c.replays(agent.core)
        t0, c0 = time.perf_counter(), time.process_time()
        self.setup_cpu = setup_cpu(c0)  # imports (a process's first run), environment, agent
        elapsed = lambda: st.elapsed + time.perf_counter() - t0  # noqa: E731
        pending, win, shown = [], _Window(task.success), {}
        if ckpt is None:  # the untrained agent: the curves' origin
            self.write_metrics(self._evaluate(agent, task, st, 0.0))

        title = (f"{self.cfg.task}/{self.cfg.model} {task.describe()} "
                 f"h={self.cfg.model_cfg.hidden}")
        with TrainProgress(title, c.env_steps, self.show_progress, unit="env steps") as bar:
            bar.update(st.env_steps, elapsed=st.elapsed)
            while st.env_steps < c.env_steps:
                before = st.env_steps
                # ---- play T steps in every game, then one update
                roll = play(agent, task, env, obs, carry, ep_return, T, gen, graph)
                obs, carry, ep_return = roll.obs, roll.carry, roll.ep_return
                st.env_steps += T * c.n_envs
                st.episodes += roll.episodes
                win.add_rollout(roll)
                loss_value, parts = update(agent, opt, roll, c)
                if not math.isfinite(loss_value):
                    self.write_metrics(pending)
                    raise DivergedError(st.env_steps, loss_value)
                st.updates += 1
                win.add_update(loss_value, parts)

                # ---- metrics, evaluation, then the checkpoint that covers them
                last = st.env_steps >= c.env_steps
                if _crossed(before, st.env_steps, c.log_every) or last:
                    shown = win.recent() or shown
                    pending += win.rows(st.env_steps, elapsed())
                    win = _Window(task.success)
                if _crossed(before, st.env_steps, c.eval_every) or last:
                    pending += win.rows(st.env_steps, elapsed())
                    win = _Window(task.success)
                    pending += self._evaluate(agent, task, st, elapsed())
                    self.write_metrics(pending)
                    pending.clear()
                    st.elapsed, st.cpu = elapsed(), st.cpu + time.process_time() - c0
                    self.save(rec.checkpoint_path, {
                        "agent": agent.state_dict(), "optim": opt.state_dict(),
                        "env": env.state_dict(), "gen": gen.get_state(), "carry": detach(carry),
                        "ep_return": ep_return, "state": dataclasses.asdict(st)})
                    t0, c0 = time.perf_counter(), time.process_time()
                evaluated = _crossed(before, st.env_steps, c.eval_every) or last
                # after an evaluation st.elapsed is what summary.json's speed divides by
                bar.update(st.env_steps, elapsed=st.elapsed if evaluated else elapsed(),
                           evaluated=evaluated, episodes=st.episodes, **shown,
                           **{f"eval_{task.success}": st.eval_success})
            bar.reason = f"budget reached ({c.env_steps:,} env steps)"
        return self._summary(agent, task, st)

    def _summary(self, agent: Agent, task, st: _State) -> dict:
        rate = f"{task.success}_rate"
        return {"steps": st.env_steps, "env_steps": st.env_steps, "updates": st.updates,
                "episodes": st.episodes, "eval_return": st.eval_return,
                f"eval_{rate}": st.eval_success,
                f"best_eval_{rate}": st.best_success, "best_eval_step": st.best_step,
                # the area under the evaluation curve per evaluation: how fast it learned
                f"mean_eval_{rate}": st.eval_sum / st.eval_count if st.eval_count else math.nan,
                "train_wall_s": round(st.elapsed, 3), "train_cpu_s": round(st.cpu, 3),
                "setup_cpu_s": round(self.setup_cpu, 3),
                "env_steps_per_s": round(st.env_steps / st.elapsed, 1) if st.elapsed else None,
                "params": sum(p.numel() for p in agent.parameters()),
                "model_params": agent.core.num_parameters(),
                "state_size": agent.core.state_size(task.episode_length),
                # the update's path: the sequence form at a rollout's length, or the steps
                "implementation": agent.core.implementation(
                    (self.c.rollout or task.episode_length) if self.c.replays(agent.core)
                    else None)}
