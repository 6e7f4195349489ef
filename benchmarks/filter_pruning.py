"""Filter pruning to a FLOPs target on Fashion-MNIST: accuracy, FLOPs and latency before/after.

For each model: train a baseline, prune to the FLOPs target with a sensitivity scan
(greedy selection), finetune, and report FLOPs removed (paddle.flops), top-1 before,
right after pruning and after finetuning, and the measured latency ratio against the
FLOPs ratio. A training subset and few epochs keep each model to a few minutes on 2 CPU
cores. Run by hand:

    PYTHONPATH=. python3 benchmarks/filter_pruning.py --train-samples 12000 --epochs 4 --finetune-epochs 3
"""

import argparse
import tempfile
import time

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline

MODELS = {"resnet20": {}, "mobilenet_v1": {"scale": 0.5}}


def run(name, args, data):
    model = slimkit.build_model(name, num_classes=10, in_channels=1, **MODELS[name])
    stages = [Finetune(name="train"),
              FilterPruning(criterion=args.criterion, target_flops_reduction=args.target,
                            sensitivity={"ratios": [0.2, 0.4, 0.6, 0.8], "eval_batches": args.eval_batches}),
              Finetune(name="finetune", epochs=args.finetune_epochs, lr=args.finetune_lr)]
    train = {"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "progress": False}
    report = {"latency_runs": 100, "latency_batch": args.latency_batch}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        reports = Pipeline(model, data, stages=stages, train=train, report=report, out_dir=out,
                           verbose=False).run()
    seconds = time.perf_counter() - start
    base, trained, pruned, tuned = reports
    flops_ratio = pruned.flops / trained.flops
    latency_ratio = tuned.latency_ms / trained.latency_ms
    return {
        "model": name + (f"(scale={MODELS[name]['scale']})" if MODELS[name] else ""),
        "flops": f"{trained.flops:,} -> {tuned.flops:,}",
        "removed": f"{1 - flops_ratio:.1%}",
        "top1": f"{trained.top1:.2%} / {pruned.top1:.2%} / {tuned.top1:.2%}",
        "drop": f"{100 * (trained.top1 - tuned.top1):+.2f}",
        "latency": f"{trained.latency_ms:.2f} -> {tuned.latency_ms:.2f} ms",
        # Latency speed-up over FLOPs speed-up: 1.0 = latency falls exactly as FLOPs do.
        "speedup_vs_flops": f"{flops_ratio / latency_ratio:.2f}",
        "latency_x": f"{trained.latency_ms / tuned.latency_ms:.2f}x vs FLOPs {1 / flops_ratio:.2f}x",
        "seconds": f"{seconds:.0f}",
        "channels": pruned.extra.get("channels"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-samples", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--criterion", default="l1")
    parser.add_argument("--eval-batches", type=int, default=2)
    parser.add_argument("--latency-batch", type=int, default=1)
    args = parser.parse_args()
    data = slimkit.load_dataset(name="fashion_mnist", train_samples=args.train_samples)
    print(f"Fashion-MNIST, train subset {args.train_samples}, {args.epochs} epochs + {args.finetune_epochs} "
          f"finetune epochs (lr {args.finetune_lr}), target {args.target:.0%} FLOPs, criterion {args.criterion}, "
          f"test split {len(data.test)} images, latency batch {args.latency_batch}")
    print("| model | FLOPs | removed | top-1 trained / pruned / finetuned | drop (points) | latency | "
          "latency vs FLOPs speed-up | latency / FLOPs speed-up | time s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        r = run(name, args, data)
        print(f"| {r['model']} | {r['flops']} | {r['removed']} | {r['top1']} | {r['drop']} | {r['latency']} | "
              f"{r['latency_x']} | {r['speedup_vs_flops']} | {r['seconds']} |", flush=True)
        print(f"channels {r['model']}: {r['channels']}", flush=True)


if __name__ == "__main__":
    main()
