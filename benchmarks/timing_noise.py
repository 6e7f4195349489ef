"""How noisy is a latency ratio on a shared CPU, and which way of timing is least noisy?

Three Paddle Inference predictors (oneDNN, 1 thread, batch 1, random weights) of one model
family: `original`, `pruned` (`slimkit.prune(ratios=0.3)`) and `same` (a second predictor of
the original's files: its ratio to `original` is 1 by construction, so any other value is a
bias of the timing). Several ways of timing (protocols: clock, runs per model and round,
an untimed re-warm run) each get the same fixed time, one after the other, and the whole
sequence is repeated: the spread of a protocol's ratio between repetitions is what a user
sees between two runs of the same command, its interval width what one run can claim.
Then the default timer (report.timing.measure with the report's defaults: stop at a 4 %
interval) is run a few times, and the CPU time of consecutive runs of one model is listed
by position (the first run after another model ran is slower: its weights left the caches).

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/timing_noise.py            # about 8 minutes
    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/timing_noise.py --smoke    # seconds

Writes benchmarks/results/timing_noise.md. Meant to be run on a machine that other work
shares (that is what it studies): the load average is recorded with every repetition.
"""

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle

import slimkit
from slimkit.core.cpu import cpu_description
from slimkit.deploy import InferenceModel, export_float
from slimkit.report.timing import Precision, measure

RESULTS = Path(__file__).parent / "results" / "timing_noise.md"
PROTOCOLS = {  # name: Precision fields (no stopping rule: each gets the same seconds)
    "wall, 10 timed runs per round (the timer before intervals)": dict(clock="wall", calls=10, rewarm=0),
    "wall, 1 timed run per round": dict(clock="wall", calls=1, rewarm=0),
    "CPU time, 1 timed run per round": dict(clock="cpu", calls=1, rewarm=0),
    "CPU time, 1 untimed + 1 timed run per round (default)": dict(clock="cpu", calls=1, rewarm=1),
    "CPU time, 1 untimed + 4 timed runs per round": dict(clock="cpu", calls=4, rewarm=1),
}
FULL = {"model": "resnet18", "size": 64, "seconds": 12, "repeats": 6, "default_runs": 3, "position_runs": 8}
SMOKE = {"model": "small_cnn", "size": 8, "seconds": 0.5, "repeats": 2, "default_runs": 1, "position_runs": 4}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="a tiny model and short runs, to check the script works")
    p.add_argument("--model", help="model of the zoo (default resnet18)")
    p.add_argument("--size", type=int, help="input size (default 64)")
    p.add_argument("--results", default=None, help=f"result page (default {RESULTS}; with --smoke a temp file)")
    return p.parse_args(argv)


def runners(settings, tmp):
    """{original, pruned, same}: predictor runners of the model, its pruned copy, and the model again."""
    name, size = settings["model"], settings["size"]
    channels = 1 if name == "small_cnn" else 3
    shape = [1, channels, size, size]
    paddle.seed(0)
    model = slimkit.build_model(name, num_classes=10 if name == "small_cnn" else 1000, in_channels=channels,
                                input_size=size)
    model.eval()
    pruned = copy.deepcopy(model)
    slimkit.prune(pruned, shape, ratios=0.3)
    original = export_float(model, Path(tmp) / "original", shape)
    smaller = export_float(pruned, Path(tmp) / "pruned", shape)
    make = lambda prefix: InferenceModel(prefix, "onednn_int8", 1).runner(shape)  # noqa: E731
    return shape, {"original": make(original), "pruned": make(smaller), "same": make(original)}


def protocol_runs(found, settings):
    """{protocol: [(pruned/original Interval, same/original Interval, preempted share, rounds, load)]}."""
    out = {name: [] for name in PROTOCOLS}
    pairs = [("pruned", "original"), ("same", "original")]
    for _ in range(settings["repeats"]):
        for name, fields in PROTOCOLS.items():
            precision = Precision(warmup=2, min_rounds=10**9, max_rounds=10**9, width=0.0,
                                  budget=settings["seconds"], **fields)
            m = measure(found, pairs, precision)
            out[name].append((m.ratio("pruned", "original"), m.ratio("same", "original"), m.preempted, m.rounds,
                              os.getloadavg()[0]))
    return out


def protocol_table(results):
    lines = ["| protocol | pruned/original: median of runs | spread between runs (sd) | interval width (median) "
             "| runs whose interval holds the median of all | same/original (truth 1.00) | intervals holding 1.00 "
             "| rounds per run | preempted runs |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        ratio = np.array([r[0].value for r in rows])
        centre = float(np.median(ratio))
        held = sum(r[0].contains(centre) for r in rows)
        same = np.array([r[1].value for r in rows])
        ones = sum(r[1].contains(1.0) for r in rows)
        lines.append(f"| {name} | {centre:.3f} | {np.std(ratio) / centre:.1%} | "
                     f"{np.median([r[0].width for r in rows]):.1%} | {held} of {len(rows)} | "
                     f"{np.median(same):.3f} (sd {np.std(same):.1%}) | {ones} of {len(rows)} | "
                     f"{int(np.median([r[3] for r in rows]))} | {np.median([r[2] for r in rows]):.0%} |")
    return lines


def default_runs(found, settings):
    """The default timer (stopping rule on) run a few times: ratio, interval, rounds, seconds, converged."""
    lines = ["| run | pruned/original (95 % interval) | width | rounds | seconds | narrow enough | load |",
             "|---|---|---|---|---|---|---|"]
    for i in range(settings["default_runs"]):
        m = measure(found, [("pruned", "original"), ("same", "original")], Precision())
        ratio = m.ratio("pruned", "original")
        lines.append(f"| {i + 1} | {ratio.text(3, 'x')} | {ratio.width:.1%} | {m.rounds} | {m.seconds:.1f} | "
                     f"{'yes' if m.converged else 'no: ' + m.noise_note()} | {os.getloadavg()[0]:.1f} |")
    return lines


def positions(found, settings):
    """CPU time of each of `position_runs` consecutive runs of a model, relative to the last ones."""
    k = settings["position_runs"]
    precision = Precision(warmup=2, calls=k, rewarm=0, min_rounds=10**9, max_rounds=10**9, width=0.0,
                          budget=settings["seconds"] * 2, clock="cpu")
    m = measure(found, [], precision)
    lines = ["| model | " + " | ".join(f"run {i + 1}" for i in range(k)) + " |", "|---|" + "---|" * k]
    for name in ("original", "pruned"):
        cpu = np.asarray(m.runs[name])[:, 1].reshape(-1, k)
        by_position = np.median(cpu, axis=0)
        lines.append(f"| {name} | " + " | ".join(f"{v / by_position[-1]:.2f}" for v in by_position) + " |")
    return lines, m.rounds


def main(argv=None):
    args = parse_args(argv)
    settings = dict(SMOKE if args.smoke else FULL)
    settings.update({k: v for k, v in (("model", args.model), ("size", args.size)) if v})
    results = Path(args.results) if args.results else (Path(tempfile.gettempdir()) / "timing_noise_smoke.md"
                                                        if args.smoke else RESULTS)
    start, load_start = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        shape, found = runners(settings, tmp)
        for run in found.values():
            run()
        by_protocol = protocol_runs(found, settings)
        stopping = default_runs(found, settings)
        position_lines, position_rounds = positions(found, settings)
    command = "PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/timing_noise.py" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    lines = ["# Timing noise on a shared CPU: which way of timing gives ratios that hold", "",
             f"Command: `{command}`  ",
             f"CPU: {cpu_description()}; load average (1 min) {load_start[0]:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end: other work shared the machine all along. Runners: Paddle "
             f"Inference predictors (oneDNN, 1 thread) of {settings['model']} at {shape}, its copy pruned with "
             f"`ratios=0.3`, and a second predictor of the same original files (`same`).", "",
             f"## Ways of timing, {settings['seconds']:g} s each, repeated {settings['repeats']} times "
             "(interleaved in time)", "", *protocol_table(by_protocol), "",
             "## The default timer: until the interval is within 4 % (at most 60 s)", "", *stopping, "",
             f"## CPU time of consecutive runs of one model, relative to the last ({position_rounds} rounds)", "",
             *position_lines, "",
             f"- wall time: {(time.perf_counter() - start) / 60:.1f} min, paddle {paddle.__version__}"]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
