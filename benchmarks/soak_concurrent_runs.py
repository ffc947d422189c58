"""Soak: concurrent `brainbench mri age --debug` runs in one results folder, one killed.

Starts N runs of the same command (seeds 33 and 34) in one results folder, kills one at a
random moment (SIGKILL: no cleanup), waits for the others, then checks that every other run
exited 0, that the leaderboard counts each (model, seed) record exactly once, that every record
is complete, and that no temporary folder of a live process is left. Prints the figures:

    python benchmarks/soak_concurrent_runs.py --runs 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brainbench.results.record import is_complete, read_records

MODELS = ("chance", "ridge", "sfcn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="when the kill comes")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results"
        command = [sys.executable, "-m", "brainbench", "mri", "age", "--debug", "-m", *MODELS]
        command += ["seeds=[33,34]", "trainer.progress_bar=false", f"output_dir={out}"]
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        procs = [
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(args.runs)
        ]
        victim = rng.randrange(args.runs)
        time.sleep(rng.uniform(5.0, 40.0))
        procs[victim].send_signal(signal.SIGKILL)
        codes = [p.wait() for p in procs]
        seconds = time.perf_counter() - start
        records = read_records(out)
        keys = [(r["model"], r["seed"]) for r in records]
        complete = all(is_complete(Path(r["path"])) for r in records)
        hidden = sorted(str(p.relative_to(out)) for p in (out / "runs").rglob(".*"))
        errors = {
            i: p.stderr.read().decode()[-300:]
            for i, p in enumerate(procs)
            if codes[i] and i != victim
        }
        print(
            json.dumps(
                {
                    "runs": args.runs,
                    "killed": victim,
                    "exit_codes": codes,
                    "records": len(records),
                    "distinct (model, seed)": len(set(keys)),
                    "expected": len(MODELS) * 2,
                    "all complete": complete,
                    "hidden leftovers": hidden,
                    "seconds": round(seconds, 1),
                    "errors of the others": errors,
                },
                indent=1,
            )
        )
        survivors_ok = all(code == 0 for i, code in enumerate(codes) if i != victim)
        exact = len(records) == len(set(keys)) == len(MODELS) * 2
        sys.exit(0 if survivors_ok and exact and complete else 1)


if __name__ == "__main__":
    main()
