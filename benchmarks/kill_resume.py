"""Kill a run at random moments, resume it, and check it ends exactly as the uninterrupted run.

    python3 benchmarks/kill_resume.py --trials 12 --seed 0 [--nproc 2] [--out /tmp/kill_resume]

One uninterrupted run of a small pipeline (digits: train -> filter_pruning -> recover) is
the reference. Each trial starts the same run, sends SIGKILL (or SIGINT/SIGTERM, at random)
at a random moment within the reference's duration, then runs `--resume` (killing it again
at random, at most twice) until it finishes. A trial passes when every stage's files are
byte-for-byte the reference's (the SHA-256 each stage.json records) and the report rows
are equal apart from timings; the lock of the killed run must be taken over every time.
Writes benchmarks/results/kill_resume.md. No timing is compared: the kill moments are
only where the runs were cut.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """data: {name: digits}
model: {name: small_cnn}
train: {epochs: 2, batch_size: 64, progress: false}
report: {latency_runs: 5, latency_warmup: 1, latency_rounds: 1}
stages:
  - {type: finetune, name: train}
  - {type: filter_pruning, ratios: 0.3}
  - {type: finetune, name: recover, epochs: 1}
"""
TIMED = ("latency_ms", "seconds")
SIGNALS = (signal.SIGKILL, signal.SIGKILL, signal.SIGINT, signal.SIGTERM)


def command(config, out, nproc, resume=False):
    cmd = [sys.executable, "-P", "-m", "slimkit", "run", str(config), "--out", str(out), "--quiet"]
    return cmd + (["--nproc", str(nproc)] if nproc > 1 else []) + (["--resume"] if resume else [])


def start(cmd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: a signal reaches every rank


def outcome(out):
    """What must not depend on the kills: each stage's file checksums and its report without timings."""
    stages = {}
    for record_path in sorted(out.glob("[0-9][0-9]-*/stage.json")):
        record = json.loads(record_path.read_text())
        report = {k: v for k, v in record["report"].items() if k not in TIMED}
        report["extra"] = {k: v for k, v in report["extra"].items() if "latency" not in k and "speedup" not in k}
        report["notes"] = [n for n in report["notes"] if n.get("kind") not in ("slower", "int8_speed")]
        report = json.loads(json.dumps(report).replace(str(out), "<out>"))  # paths name the run's folder
        stages[record_path.parent.name] = {"files": record.get("files"), "report": report}
    return stages


def trial(config, out, nproc, seconds, rng):
    """Kill the run (and up to two resumes) at random moments; returns (passed, what happened)."""
    shutil.rmtree(out, ignore_errors=True)
    events, resume = [], False
    for _ in range(3):
        proc = start(command(config, out, nproc, resume))
        cut = rng.uniform(0.0, seconds)
        try:
            proc.wait(timeout=cut)
        except subprocess.TimeoutExpired:
            sig = rng.choice(SIGNALS)
            os.killpg(proc.pid, sig)
            proc.wait(timeout=120)
            events.append(f"{signal.Signals(sig).name} at {cut:.1f} s")
        else:
            events.append(f"finished before {cut:.1f} s (rc {proc.returncode})")
            if proc.returncode == 0:
                return True, events
        resume = resume or out.joinpath("pipeline.json").is_file()
    proc = start(command(config, out, nproc, resume=True))
    _, err = proc.communicate(timeout=1800)
    events.append(f"resume rc {proc.returncode}" + (f": {err.strip().splitlines()[-1]}" if proc.returncode else ""))
    return proc.returncode == 0, events


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--out", default="/tmp/kill_resume")
    args = parser.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    config = work / "run.yaml"
    config.write_text(CONFIG)
    begin = time.perf_counter()
    reference = subprocess.run(command(config, work / "reference", args.nproc), env={**os.environ,
                               "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    seconds = time.perf_counter() - begin
    if reference.returncode:
        sys.exit(f"the reference run failed: {reference.stderr}")
    expected = outcome(work / "reference")
    rng = random.Random(args.seed)
    rows = []
    for i in range(args.trials):
        ok, events = trial(config, work / "trial", args.nproc, seconds, rng)
        same = ok and outcome(work / "trial") == expected
        if not same:  # kept for a look
            shutil.rmtree(work / f"differs-{i}", ignore_errors=True)
            shutil.copytree(work / "trial", work / f"differs-{i}")
        leftovers = sorted(p.name for p in (work / "trial").rglob("*.tmp")) + \
            sorted(p.name for p in (work / "trial").glob(".slimkit-lock"))
        rows.append((i, "; ".join(events), ok, same, ", ".join(leftovers) or "-"))
        print(rows[-1], flush=True)
    write_page(args, rows, expected)


def write_page(args, rows, expected):
    flags = f" --nproc {args.nproc}" if args.nproc > 1 else ""
    lines = ["## Killed at random moments, resumed: the same files and numbers", "",
             f"`python3 benchmarks/kill_resume.py --trials {args.trials} --seed {args.seed}{flags}`", "",
             "Each trial starts the run below, cuts it at a random moment with SIGKILL, SIGINT or SIGTERM "
             "(the resumes too, at most twice), then resumes it to the end. *Same* means every stage's files "
             "are byte-for-byte the uninterrupted run's (the SHA-256 in each stage.json) and the report rows "
             "are equal apart from timings. Left over: temporary files of writes the kill cut short, and "
             "the lock file (none: a killed run's lock is taken over and removed).", "",
             "```yaml", CONFIG.strip(), "```", "",
             "| trial | what happened | finished | same | left over |", "|---|---|---|---|---|"]
    lines += [f"| {i} | {events} | {ok} | {same} | {left} |" for i, events, ok, same, left in rows]
    digest = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:12]
    lines += ["", f"{sum(r[3] for r in rows)} of {len(rows)} trials ended the same as the reference "
                  f"(outcome digest {digest})."]
    page = ROOT / "benchmarks" / "results" / "kill_resume.md"
    page.write_text("\n".join(lines) + "\n")
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
