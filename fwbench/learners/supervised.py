"""The supervised training loop: Adam, gradient clipping, validation, early stopping, test.

Reads top to bottom like the recipe: build data and network; resume from the checkpoint if
there is one; step through shuffled minibatches; every `eval_every` steps score the validation
split, keep the best weights, write metrics then a checkpoint; stop after `patience`
evaluations without improvement; finally score the test sets with the best weights.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from fwbench.config import RunConfig
from fwbench.learners.base import Learner, setup_cpu
from fwbench.learners.optim import Adam, clip_grad_norm
from fwbench.errors import DivergedError
from fwbench.network import build_classifier, build_task
from fwbench.progress import TrainProgress, announce
from fwbench.records import RunRecord
from fwbench.settings import setting


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
    seed: int = setting(0, "seed for initialisation and batch order", low=0)
    data_seed: int = setting(0, "seed the task's data splits are generated from", low=0)
    lr: float = setting(1e-3, "Adam learning rate", low=0.0, paper="[R]")
    batch_size: int = setting(128, "minibatch size", low=1, paper="[R]")
    max_steps: int = setting(20_000, "maximum parameter updates", low=1)
    eval_every: int = setting(500, "updates between validation evaluations", low=1)
    log_every: int = setting(100, "updates between training-loss rows", low=1)
    patience: int = setting(10, "stop after this many evaluations without a lower validation "
                            "error (0: never)", low=0)
    clip: float = setting(1.0, "gradient-norm clipping threshold (0: off)", low=0.0, paper="[C]")
    readout: int = setting(100, "ReLU units in the hidden layer before the softmax", low=1,
                           paper="[S]")
    eval_batch: int = setting(2000, "batch size for evaluation", low=1)


def _per_target(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, (Q,) C] and targets [N, (Q,)] as [N*Q, C] and [N*Q]: one row per target."""
    return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)


@dataclasses.dataclass
class _State:
    """Everything a checkpoint restores besides the weights."""

    step: int = 0
    best_error: float = math.inf
    best_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # the process's CPU seconds in training (all its threads)
    stopped: bool = False


class SupervisedLearner(Learner):
    Config = SupervisedConfig
    summary = "supervised classification: Adam, clipping, validation early stopping, test"

    def __init__(self, cfg: RunConfig, record: RunRecord, device: torch.device,
                 progress: bool = True, log: str = "none"):
        super().__init__(cfg, record, device, progress, log)
        self._perm_epoch, self._perm = -1, None

    # ---- data order: a pure function of (seed, step), so a resumed run sees the same batches
    def _batch_indices(self, step: int, n: int) -> np.ndarray:
        per_epoch = max(1, n // self.c.batch_size)
        epoch, pos = divmod(step, per_epoch)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.c.seed, epoch]).permutation(n)
            self._perm_epoch = epoch
        return self._perm[pos * self.c.batch_size:(pos + 1) * self.c.batch_size]

    @torch.no_grad()
    def evaluate(self, net, split) -> tuple[float, float]:
        """(mean cross-entropy, error rate) over a whole split (per target)."""
        net.eval()
        total_loss, wrong = 0.0, 0
        for i in range(0, len(split), self.c.eval_batch):
            x = split.x[i:i + self.c.eval_batch].to(self.device)
            y = split.y[i:i + self.c.eval_batch].to(self.device)
            logits, y = _per_target(net(x), y)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            wrong += (logits.argmax(-1) != y).sum().item()
        net.train()
        return total_loss / split.y.numel(), wrong / split.y.numel()

    def train(self) -> dict:
        c, rec = self.c, self.record
        task = build_task(self.cfg)
        with announce("building data", self.show_progress):
            data = task.splits(c.data_seed)
        net = build_classifier(self.cfg, task).to(self.device)
        opt = Adam(net.parameters(), lr=c.lr)
        st, ckpt = _State(), self.resume()
        if ckpt is not None:
            net.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optim"])
            st = _State(**ckpt["state"])
        rec.truncate_metrics(st.step)
        self.start_tracking(st.step)

        train = data["train"]
        x_train, y_train = train.x.to(self.device), train.y.to(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        self.setup_cpu = setup_cpu(c0)  # imports (a process's first run), data, model
        elapsed = lambda: st.elapsed + time.perf_counter() - t0  # noqa: E731
        pending: list[tuple] = []
        win_loss, win_wrong, win_n, last_valid = 0.0, 0, 0, None

        def flush_window():
            nonlocal win_loss, win_wrong, win_n
            if win_n:
                pending.append((st.step, "train", "loss", win_loss / win_n, elapsed()))
                pending.append((st.step, "train", "error", win_wrong / win_n, elapsed()))
            win_loss, win_wrong, win_n = 0.0, 0, 0

        title = f"{self.cfg.task}/{self.cfg.model} h={self.cfg.model_cfg.hidden}"
        with TrainProgress(title, c.max_steps, self.show_progress) as bar:
            bar.update(st.step, elapsed=st.elapsed)
            while st.step < c.max_steps and not st.stopped:
                idx = torch.from_numpy(self._batch_indices(st.step, len(train))).to(self.device)
                xb, yb = x_train[idx], y_train[idx]
                logits, yb = _per_target(net(xb), yb)
                loss = F.cross_entropy(logits, yb)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    self.write_metrics(pending)
                    raise DivergedError(st.step + 1, loss_value)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.clip > 0:
                    clip_grad_norm(net.parameters(), c.clip)
                opt.step()
                st.step += 1
                win_loss += loss_value * len(yb)
                win_wrong += (logits.argmax(-1) != yb).sum().item()
                win_n += len(yb)

                if st.step % c.log_every == 0:
                    flush_window()
                if st.step % c.eval_every == 0 or st.step == c.max_steps:
                    flush_window()
                    v_loss, v_err = self.evaluate(net, data["valid"])
                    last_valid = v_err
                    pending.append((st.step, "valid", "loss", v_loss, elapsed()))
                    pending.append((st.step, "valid", "error", v_err, elapsed()))
                    # patience counts evaluations without a lower error; the kept weights
                    # are those of the lowest (error, loss), so ties at 0% go to the lower loss
                    st.bad_evals = 0 if v_err < st.best_error else st.bad_evals + 1
                    st.stopped = bool(c.patience) and st.bad_evals >= c.patience
                    if (v_err, v_loss) < (st.best_error, st.best_loss):
                        st.best_error, st.best_loss, st.best_step = v_err, v_loss, st.step
                        self.save(rec.best_path, net.state_dict())
                    # metrics first, then the checkpoint that covers them
                    self.write_metrics(pending)
                    pending.clear()
                    st.elapsed, st.cpu = elapsed(), st.cpu + time.process_time() - c0
                    self.save(rec.checkpoint_path, {"model": net.state_dict(),
                                                     "optim": opt.state_dict(),
                                                     "state": dataclasses.asdict(st)})
                    # elapsed() and the CPU time now count from the checkpoint
                    t0, c0 = time.perf_counter(), time.process_time()
                evaluated = st.step % c.eval_every == 0 or st.step == c.max_steps
                # after an evaluation st.elapsed is what summary.json's speed divides by
                bar.update(st.step, elapsed=st.elapsed if evaluated else elapsed(),
                           evaluated=evaluated, loss=loss_value,
                           valid_err=last_valid)
            bar.reason = (f"early stop after {st.bad_evals} evaluations without improvement"
                          if st.stopped else f"budget reached ({c.max_steps:,} steps)")

        return self._finish(net, task, data, st)

    def _finish(self, net, task, data, st: _State) -> dict:
        """Score the test sets with the best-validation weights."""
        net.load_state_dict(self.load(self.record.best_path))
        tests = {"test": data["test"], **task.extra_tests(self.c.data_seed)}
        summary = {"steps": st.step, "stopped_early": st.stopped, "best_step": st.best_step,
                   "best_valid_error": st.best_error, "best_valid_loss": st.best_loss,
                   "train_wall_s": round(st.elapsed, 3), "train_cpu_s": round(st.cpu, 3),
                   "steps_per_s": round(st.step / st.elapsed, 3) if st.elapsed else None}
        rows, c_test = [], time.process_time()
        for name, split in tests.items():
            loss, err = self.evaluate(net, split)
            rows += [(st.step, name, "loss", loss, st.elapsed),
                     (st.step, name, "error", err, st.elapsed)]
            summary[f"{name}_loss"], summary[f"{name}_error"] = loss, err
        summary["test_accuracy"] = 1.0 - summary["test_error"]
        # a run's fixed cost, beside its training: set-up before the first update, test passes
        summary["setup_cpu_s"] = round(self.setup_cpu, 3)
        summary["test_cpu_s"] = round(time.process_time() - c_test, 3)
        # a process killed after writing these rows but before the summary writes them again
        self.record.truncate_metrics(st.step, drop_splits=tests)
        self.write_metrics(rows)
        seq_len = data["train"].x.shape[1] if net.model.consumes == "sequence" else 0
        summary["params"] = sum(p.numel() for p in net.parameters())
        summary["model_params"] = net.model.num_parameters()
        summary["state_size"] = net.model.state_size(seq_len)
        summary["implementation"] = net.model.implementation(seq_len or None)
        if net.marks is not None:  # level marks run the model's forward_levels (its own or the
            # contract's, which calls the implementation above between marks)
            summary["implementation"]["levels"] = net.model.levels_implementation(seq_len)
        return summary
