"""The long, randomised measurements behind the README's promises (minutes; not in the suite).

    PYTHONPATH=. python tests/stress/measure_trust.py --kills 25 --lock-trials 200

kill -9 of `fwbench run` and of `fwbench sweep --jobs 2` at uniformly random moments; after
each kill: processes left alive 20 s later, then the same command re-run to the end, with
rows lost, duplicated or changed and summaries changed against an uninterrupted run, and
resumes refused. Then the lock under simultaneous starts.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trust_harness import TINY, command, kill_at, lock_race, measurements  # noqa: E402

SETS = {**TINY, "max_steps": 400, "eval_every": 20}
MODELS = ("irnn", "lstm")


def _compare(got: Path, ref: Path) -> dict[str, int]:
    counts = {"lost": 0, "duplicated": 0, "changed": 0, "summaries_changed": 0}
    for run in ref.iterdir():
        (rows, summary), (ref_rows, ref_summary) = measurements(got / run.name), measurements(run)
        keys = [tuple(r[:3]) for r in rows]
        counts["lost"] += len({tuple(r[:3]) for r in ref_rows} - set(keys))
        counts["duplicated"] += len(keys) - len(set(keys))
        counts["changed"] += sum(a != b for a, b in zip(rows, ref_rows) if a[:3] == b[:3])
        counts["summaries_changed"] += summary != ref_summary
    return counts


def kills(kind: str, n: int, root: Path, rng: random.Random) -> dict[str, int]:
    """`n` kill -9 of `kind` at random moments, each followed by a resume to the end."""
    ref = root / f"{kind}-ref"
    t0 = time.time()
    subprocess.run(command(kind, ref, SETS, MODELS), check=True)
    span = time.time() - t0
    total = {"kills": n, "orphans": 0, "resumes_refused": 0, "lost": 0, "duplicated": 0,
             "changed": 0, "summaries_changed": 0}
    for i in range(n):
        results = root / f"{kind}-{i}"
        left, _ = kill_at(command(kind, results, SETS, MODELS), rng.uniform(0.5, span))
        total["orphans"] += left
        done = subprocess.run(command(kind, results, SETS, MODELS), capture_output=True)
        if done.returncode:
            total["resumes_refused"] += 1
            continue
        for key, value in _compare(results / "runs", ref / "runs").items():
            total[key] += value
        print(kind, i, total, flush=True)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=25)
    ap.add_argument("--lock-trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        both, neither = lock_race(root / "lock", args.lock_trials)
        print(f"lock: {args.lock_trials} simultaneous starts, both held {both}, "
              f"neither {neither}", flush=True)
        for kind in ("run", "sweep"):
            print(kind, "kill -9:", kills(kind, args.kills, root, rng), flush=True)


if __name__ == "__main__":
    main()
