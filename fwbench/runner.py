"""Running one experiment: the life cycle of its run directory.

A run directory is keyed by the run id. Running the same config again reports the finished
run; an unfinished one (interrupted, or its process killed) resumes from its checkpoint;
`force` starts it over. Errors about the directory leave it as it was. A run resumes with the
thread count it started with (recorded in config.json): torch's reductions split work by
thread, so another count would change its numbers.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

from fwbench.config import RunConfig
from fwbench.errors import DivergedError, FwbenchError
from fwbench.learners import LEARNERS
from fwbench.provenance import environment, now
from fwbench.records import RunRecord, RunResult, atomic_write, ensure_writable
from fwbench.tracking import DEFAULT as DEFAULT_LOG, check_log


@dataclasses.dataclass(frozen=True)
class Execution:
    """How and where to run; not part of the run id."""

    results: Path = Path("results")
    device: str = "auto"
    threads: int = 0
    force: bool = False
    progress: bool = True
    log: str = DEFAULT_LOG  # tracker mirroring metrics.csv: tensorboard | none


def run_experiment(cfg: RunConfig, exe: Execution = Execution()) -> RunResult:
    """Train (or resume, or report) the run described by `cfg`."""
    from fwbench.device import resolve_device, set_threads

    device = resolve_device(exe.device)
    threads = set_threads(exe.threads)
    check_log(exe.log)
    record = RunRecord.at(ensure_writable(exe.results), cfg.run_id)
    if not exe.force:
        done = record.finished(cfg.to_dict())
        if done is not None:
            return done
    fresh = not record.path.exists()
    record.acquire()
    try:
        if exe.force:
            _clear(record)
        threads = _resume_threads(record, threads, exe.progress)
        config_before = record.config_path.read_bytes() if record.config_path.exists() else None
        _write_config(cfg, record, str(device), threads)
        record.start_metrics()
        try:
            summary, wall_s = _train(cfg, exe, record, device)
        except FwbenchError:  # bad input found while building (a bad data_dir): leave no trace
            if fresh and not record.read_metrics():
                record.release()
                shutil.rmtree(record.path, ignore_errors=True)
            elif config_before is not None:  # a resume refused (damaged files): not resumed
                atomic_write(record.config_path, config_before)
            raise
        summary.update(run_id=cfg.run_id, task=cfg.task, model=cfg.model, wall_s=wall_s,
                       finished=now())
        # config first: a kill between the two leaves an unfinished run, which resumes
        saved = record.read_config()
        saved["end_time"] = summary["finished"]
        record.write_config(saved)
        record.write_summary(summary)
        return RunResult(cfg.run_id, summary["status"], summary, path=record.path)
    finally:
        record.release()


def _train(cfg: RunConfig, exe: Execution, record: RunRecord, device) -> tuple[dict, float]:
    """The learner's summary of the run with its status, and its wall time in seconds."""
    learner = LEARNERS.get(cfg.learner)(cfg, record, device, progress=exe.progress, log=exe.log)
    t0 = time.time()
    try:
        summary = {"status": "completed", **learner.train()}
    except DivergedError as e:
        summary = {"status": "diverged", "diverged_step": e.step, "loss": str(e.loss)}
    except KeyboardInterrupt:
        record.write_summary({"status": "interrupted", "run_id": cfg.run_id, "time": now()})
        raise
    finally:
        learner.close()
    return summary, round(time.time() - t0, 3)


def _clear(record: RunRecord) -> None:
    """Remove everything of a run but its lock (which this process holds)."""
    for p in record.path.iterdir():
        if p.name == record.lock_path.name:
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _resume_threads(record: RunRecord, threads: int, say: bool) -> int:
    """The thread count to run with: the one the run started with, if it has started."""
    from fwbench.device import set_threads

    if not record.config_path.exists():
        return threads
    started = (record.read_config().get("environment") or {}).get("threads")
    if not isinstance(started, int) or started < 1 or started == threads:
        return threads
    if say:
        print(f"resuming {record.run_id} with the {started} thread(s) it started with "
              f"(not {threads}), so its numbers equal an uninterrupted run's", file=sys.stderr)
    return set_threads(started)


def _write_config(cfg: RunConfig, record: RunRecord, device: str, threads: int) -> None:
    env = environment(device, threads)
    if record.config_path.exists():  # resuming: keep the original, note the resumption
        saved = record.read_config()
        saved.setdefault("resumed", []).append({"time": now(), **env})
    else:
        learner = cfg.learner_cfg
        saved = {"run_id": cfg.run_id, "config": cfg.to_dict(), "flat": cfg.flat(),
                 "seeds": {"seed": getattr(learner, "seed", None),
                           "data_seed": getattr(learner, "data_seed", None)},
                 "environment": env, "start_time": now()}
    record.write_config(saved)
