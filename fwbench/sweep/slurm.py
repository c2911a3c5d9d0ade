"""Running a sweep's runs as one SLURM array job, through submitit.

A SLURM cluster shares a filesystem between its login and compute nodes, so each array task
runs one run straight into the results directory, as a local run does; submitit keeps its job
files, logs and returned results under <results>/slurm/. The command that submitted the array
waits for it and reports like a local sweep; one that submitted without waiting has printed the
job id, and a later `fwbench sweep` with the same arguments sees finished runs as done.

Preemption and time limits: SLURM signals a task (SIGUSR2, `signal_delay_s` before it stops
it); submitit then calls the task's `checkpoint` method and requeues it. A run's own checkpoint
(written after every validation) lives in its run directory, so the requeued task is the same
call again, and the run resumes with the numbers it would have had uninterrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
import time
from pathlib import Path

from fwbench.errors import FwbenchError
from fwbench.records import RunResult
from fwbench.settings import parse_pairs
from fwbench.sweep.execute import execute_one

SLURM_DIR = "slurm"  # submitit's folder under the results root: job files, logs, results
CLUSTER = "slurm"  # submitit's executor; "local" runs the same array as processes here
MAX_REQUEUES = 5  # time limits a run may reach before it fails (preemptions do not count)
POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """What the array job asks SLURM for; `sbatch` holds extra sbatch options, as given."""

    partition: str | None = None
    time_limit: int = 120  # minutes per array task
    mem_gb: float | None = None
    cpus_per_task: int = 1
    array_parallelism: int = 256
    sbatch: tuple[str, ...] = ()

    def parameters(self) -> dict:
        """submitit AutoExecutor parameters; FwbenchError on an out-of-range value."""
        for name, value, low in (("--time-limit", self.time_limit, 1),
                                 ("--cpus-per-task", self.cpus_per_task, 1),
                                 ("--array-parallelism", self.array_parallelism, 1)):
            if value < low:
                raise FwbenchError(f"invalid {name} {value}: expected an integer >= {low}")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise FwbenchError(f"invalid --mem-gb {self.mem_gb}: expected a number > 0")
        params = {"name": "fwbench", "timeout_min": self.time_limit,
                  "cpus_per_task": self.cpus_per_task, "mem_gb": self.mem_gb,
                  "slurm_partition": self.partition,
                  "slurm_array_parallelism": self.array_parallelism}
        extra = parse_pairs(self.sbatch, "--sbatch")
        if extra:
            params["slurm_additional_parameters"] = extra
        return {k: v for k, v in params.items() if v is not None}


def slurm_options(slurm: bool, jobs: int | None = None, scheduler: str | None = None,
                  no_wait: bool = False, **given) -> SlurmOptions | None:
    """The SLURM options given (None without --slurm); FwbenchError on a conflict or bad value."""
    named = {k: v for k, v in given.items() if v is not None and v != []}
    if not slurm:
        stray = [*named, *(["no_wait"] if no_wait else [])]
        if stray:
            raise FwbenchError(f"--{stray[0].replace('_', '-')} is an option of --slurm; add "
                               "--slurm or drop it")
        return None
    for name, value, where in (("--jobs", jobs, "here"), ("--scheduler", scheduler, "on Dask")):
        if value is not None:
            raise FwbenchError(f"--slurm and {name} conflict: --slurm submits the runs to SLURM, "
                               f"{name} runs them {where}; give one")
    if "sbatch" in named:
        named["sbatch"] = tuple(named["sbatch"])
    options = SlurmOptions(**named)
    options.parameters()  # validated now, before anything is built or written
    return options


class ArrayTask:
    """One array task: one run into the shared results directory; requeued when preempted."""

    def __call__(self, run_id: str, cfg_dict: dict, results: str, threads: int, device: str,
                 log: str) -> RunResult:
        return execute_one(run_id, cfg_dict, results, threads, device, log)

    def checkpoint(self, *args, **kwargs):
        """The same call again: the run resumes from the checkpoint in its run directory."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


class SlurmExecutor:
    """The sweep's runs as one SLURM array job; `submit_array` first, then the sweep loop."""

    def __init__(self, results: Path, options: SlurmOptions = SlurmOptions(), threads: int = 0,
                 device: str = "auto", log: str = "tensorboard"):
        if threads < 0:
            raise FwbenchError(f"invalid --threads {threads}: expected an integer >= 0")
        self.results, self.options = Path(results), options
        self.params = options.parameters()
        self.threads = threads or options.cpus_per_task
        self.device, self.log = device, log
        if CLUSTER == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise FwbenchError("--slurm needs SLURM's sbatch and srun on PATH; run the sweep on "
                               "a node of the cluster that can submit jobs")
        # what this submission creates, so that a refused one leaves the disk as it was
        self._fresh = [p for p in (self.results, self.results / SLURM_DIR) if not p.exists()]
        self._before = _listing(self.results / SLURM_DIR)
        self._jobs: dict[str, object] = {}
        self.job_id: str | None = None

    def describe(self) -> str:
        if self.job_id is None:
            return "SLURM (nothing to submit)"
        where = f" on partition {self.options.partition}" if self.options.partition else ""
        return (f"SLURM array job {self.job_id}{where} ({len(self._jobs)} task(s), "
                f"{self.threads} thread(s) each)")

    def submit_array(self, runs: list) -> str | None:
        """Submit `runs` as one array job; its id (None when there is nothing to run)."""
        if not runs:
            return None
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's errors
                jobs = self._submit(runs)
        except Exception as e:  # sbatch refused, a bad parameter, an unwritable folder
            self._undo()
            raise FwbenchError(f"SLURM submission failed: {_first_line(e)}") from None
        self._jobs.update(zip((r.run_id for r in runs), jobs))
        self.job_id = str(jobs[0].job_id).split("_")[0]
        return self.job_id

    def _submit(self, runs: list) -> list:
        import submitit

        ex = submitit.AutoExecutor(self.results / SLURM_DIR / "%j", cluster=CLUSTER,
                                   slurm_max_num_timeout=MAX_REQUEUES)
        ex.update_parameters(**self.params)
        task = ArrayTask()
        with ex.batch():  # one sbatch call: an array job, one task per run
            jobs = [ex.submit(task, r.run_id, r.cfg.to_dict(), str(self.results), self.threads,
                              self.device, self.log) for r in runs]
        return jobs

    def _undo(self) -> None:
        """Remove what a refused submission wrote: its folders, else its files (job pickles,
        the sbatch script) beside those of earlier submissions."""
        for path in reversed(self._fresh):
            shutil.rmtree(path, ignore_errors=True)
        for path in _listing(self.results / SLURM_DIR) - self._before:
            path.unlink(missing_ok=True)

    def slots(self) -> int:
        return max(1, len(self._jobs))  # the whole array is submitted; SLURM throttles it

    def submit(self, run) -> str:
        """The run's handle: its array task (submitted by `submit_array`)."""
        if run.run_id not in self._jobs:
            self.submit_array([run])
        return run.run_id

    def wait(self, handles: list, timeout: float) -> list[tuple]:
        """Results of the array tasks that ended within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            done = [h for h in handles if self._jobs[h].done()]
            if done or time.monotonic() >= deadline:
                return [(h, self._collect(h)) for h in done]
            time.sleep(POLL_S)

    def _collect(self, run_id: str) -> RunResult:
        job = self._jobs.pop(run_id)
        try:
            return job.result()
        except Exception as e:  # the task failed outside the run, was cancelled, timed out
            return RunResult(run_id, "failed", error=f"SLURM job {job.job_id}: {_first_line(e)} "
                             f"(log: {job.paths.stderr}); run the sweep again to resume")

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for job in self._jobs.values():
                job.cancel(check=False)


def _listing(folder: Path) -> set[Path]:
    """The files directly in `folder` (none if it does not exist)."""
    return {p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()


def _first_line(e: BaseException) -> str:
    """The first non-empty line of an error (submitit's carry whole logs)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
