"""Benchmark: wall time of a finetune epoch and of a sensitivity scan on 1 vs 2 processes (1 thread each).

    PYTHONPATH=. python3 benchmarks/distributed.py            # Fashion-MNIST subset, resnet20: tens of minutes
    PYTHONPATH=. python3 benchmarks/distributed.py --smoke    # digits, small_cnn: under a minute

The same work both ways: one epoch over the same global batches (2 processes x the per-process
batch, or one process with the whole global batch), and one scan of every prunable group at
every ratio (2 processes share the groups out). Each configuration is its own command
(`benchmarks/distributed.py --worker`), the 2-process one started by
`python -m paddle.distributed.launch --nproc_per_node 2`; every process runs with
OMP_NUM_THREADS=1. The epoch and the scan are timed inside the processes, between barriers;
the command's wall time adds start-up (paddle import per process, the launcher, joining).
Writes benchmarks/results/distributed.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "distributed.md"


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="digits and small_cnn, a tiny scan (seconds)")
    parser.add_argument("--global-batch", type=int, default=None, help="training batch over all processes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: time the work, write this JSON
    parser.add_argument("--nproc", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    smoke = {"data": {"name": "digits"}, "model": "small_cnn", "ratios": [0.3, 0.6], "eval_batches": 1,
             "global_batch": 32, "input": [1, 1, 8, 8]}
    full = {"data": {"name": "fashion_mnist", "train_samples": 8000}, "model": "resnet20",
            "ratios": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "eval_batches": 4, "global_batch": 128,
            "input": [1, 1, 28, 28]}
    args.setup = smoke if args.smoke else full
    if args.global_batch:
        args.setup["global_batch"] = args.global_batch
    return args


def worker(args):
    """Time one epoch and one scan in this process (one of `args.nproc`); rank 0 writes the JSON."""
    import slimkit
    from slimkit.core import parallel
    from slimkit.pruning import analyze
    from slimkit.pruning.sensitivity import sensitive

    setup = args.setup
    data = slimkit.load_dataset(**setup["data"])
    model = slimkit.build_model(setup["model"], num_classes=10, in_channels=1, input_size=setup["input"][-1])
    engine = slimkit.Engine(data, {"batch_size": setup["global_batch"] // parallel.world_size(), "epochs": 1,
                                   "progress": False, "seed": 0})
    parallel.init()
    parallel.barrier()
    start = time.perf_counter()
    history = engine.train(model, epochs=1)
    parallel.barrier()
    epoch = time.perf_counter() - start
    graph = analyze(model, setup["input"])
    parallel.barrier()
    start = time.perf_counter()
    losses = sensitive(model, setup["input"], lambda m: engine.evaluate(m, "val", setup["eval_batches"])["top1"],
                       setup["ratios"], "l1", graph=graph, progress=False)
    parallel.barrier()
    scan = time.perf_counter() - start
    if parallel.is_main():
        Path(args.worker).write_text(json.dumps({
            "epoch_s": epoch, "scan_s": scan, "steps": engine.steps_per_epoch(), "loss": history[-1]["loss"],
            "groups": len(losses)}))


def run(args, nproc, folder):
    """One configuration as its own command; (its JSON, the command's wall seconds)."""
    out = Path(folder) / f"nproc{nproc}.json"
    script = [str(Path(__file__).resolve()), "--worker", str(out), "--nproc", str(nproc),
              "--global-batch", str(args.setup["global_batch"]), *(["--smoke"] if args.smoke else [])]
    if nproc == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
               "--log_dir", str(Path(folder) / f"logs{nproc}"), *script]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT.parent)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text()), time.perf_counter() - start


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker(args)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="slimkit-bench-dist-") as folder:
        rows = {n: run(args, n, folder) for n in (1, 2)}
    lines = page(args, rows, load)
    print("\n".join(lines))
    RESULTS.write_text("\n".join(lines) + "\n")
    return 0


def page(args, rows, load):
    setup = args.setup
    command = "PYTHONPATH=. python3 benchmarks/distributed.py " + " ".join(a for a in sys.argv[1:])
    one = rows[1][0]
    data = setup["data"]["name"] + (f" ({setup['data']['train_samples']:,}-image training subset)"
                                    if "train_samples" in setup["data"] else "")
    lines = ["# Data-parallel runs: 1 vs 2 processes on the same work" + (" (smoke run)" if args.smoke else ""), "",
             f"Command (repository root): `{command.strip()}`  ",
             f"Machine: shared 2-core x86_64 CPU, load average {load:.1f} when it started; every process "
             "OMP_NUM_THREADS=1, gloo.", "",
             f"Work: `{setup['model']}` on {data}. One finetune epoch of {one['steps']} steps with a global batch "
             f"of {setup['global_batch']} (2 processes: {setup['global_batch'] // 2} each); one sensitivity scan of "
             f"{one['groups']} groups x {len(setup['ratios'])} ratios (L1), {setup['eval_batches']} validation "
             "batch(es) of 256 per trial.", "",
             "| processes | finetune epoch s | speed-up | sensitivity scan s | speed-up | command wall s |",
             "|---|---|---|---|---|---|"]
    for n, (result, wall) in rows.items():
        lines.append(f"| {n} | {result['epoch_s']:.2f} | {one['epoch_s'] / result['epoch_s']:.2f}x | "
                     f"{result['scan_s']:.2f} | {one['scan_s'] / result['scan_s']:.2f}x | {wall:.1f} |")
    lines += ["", "The command's wall time includes importing paddle in every process and, for 2 processes, the "
              "launcher and joining the gloo group: a few seconds that a long run pays once."]
    if args.smoke:
        lines += ["", "A smoke run: the work is tiny, so the fixed costs of 2 processes outweigh it: the gradient "
                      "all-reduce of every step, and about 90 ms for each exchange through paddle.distributed's TCP "
                      "store (reading the scan file, gathering each round of the scan). The full benchmark "
                      "(`PYTHONPATH=. python3 benchmarks/distributed.py`: resnet20 on 8,000 Fashion-MNIST images, "
                      "9 ratios) is the one that says what 2 processes gain; it has not been run on this machine."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
