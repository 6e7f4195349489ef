"""Does distillation help a pruned model recover? Finetune vs distill, same epochs, several seeds.

On Fashion-MNIST (a seeded training subset), a small_cnn teacher is trained once and a copy
of it is filter-pruned (L1, the same share of channels in every prunable layer). For every
seed that pruned student is trained twice for the same epochs and batch order: once with the
`finetune` stage (cross-entropy) and once with the `distill` stage (alpha * CE + (1 - alpha) *
T^2 * KL to the unpruned teacher). Test top-1 of both is written with mean, standard
deviation and the paired per-seed difference.

    PYTHONPATH=. python3 benchmarks/distillation.py            # the run in benchmarks/results/distillation.md
"""

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import paddle

import slimkit
from slimkit import Distillation, Finetune
from slimkit.strategies.base import Context

RESULTS = Path(__file__).parent / "results" / "distillation.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-samples", type=int, default=12000, help="Fashion-MNIST training subset")
    p.add_argument("--teacher-width", type=int, default=8, help="small_cnn width of the teacher")
    p.add_argument("--teacher-epochs", type=int, default=4)
    p.add_argument("--prune-ratio", type=float, default=0.6, help="share of channels removed per prunable layer")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each recovery run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="learning rate of the teacher")
    p.add_argument("--recover-lr", type=float, default=0.01, help="learning rate of the recovery runs")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def build(width, seed):
    paddle.seed(seed)
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=28, width=width)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data = slimkit.load_dataset(name="fashion_mnist", train_samples=args.train_samples)
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "progress": False}

    teacher = build(args.teacher_width, 0)
    engine = slimkit.Engine(data, {**train, "epochs": args.teacher_epochs})
    engine.train(teacher)
    teacher_top1 = engine.evaluate(teacher)["top1"]
    print(f"teacher small_cnn(width={args.teacher_width}): top-1 {teacher_top1:.2%}", flush=True)

    pruned = copy.deepcopy(teacher)
    result = slimkit.prune(pruned, [1, 1, 28, 28], criterion="l1", ratios=args.prune_ratio)
    pruned_top1 = engine.evaluate(pruned)["top1"]
    print(f"pruned: FLOPs {result.flops_before:,} -> {result.flops_after:,}, top-1 {pruned_top1:.2%}", flush=True)

    rows = []
    for seed in args.seeds:
        engine = slimkit.Engine(data, {**train, "seed": seed})
        initial = pruned
        row = {"seed": seed}
        for label, stage in (("plain", Finetune(epochs=args.epochs, lr=args.recover_lr)),
                             ("distill", Distillation(epochs=args.epochs, lr=args.recover_lr,
                                                      temperature=args.temperature, alpha=args.alpha))):
            student = copy.deepcopy(initial)
            ctx = Context(data=data, engine=engine, input_shape=[1, 1, 28, 28], out_dir=Path(tempfile.mkdtemp()),
                          teacher=teacher, stage_name=label)
            t0 = time.perf_counter()
            stage.apply(student, ctx)
            row[f"{label}_s"] = time.perf_counter() - t0
            row[label] = engine.evaluate(student)["top1"]
        row["params"] = slimkit.count_params(initial)
        rows.append(row)
        print(f"seed {seed}: plain {row['plain']:.2%}  distill {row['distill']:.2%}", flush=True)

    pruning = {"flops_before": result.flops_before, "flops_after": result.flops_after, "top1": pruned_top1}
    write(args, argv, teacher_top1, slimkit.count_params(teacher), pruning, rows, time.perf_counter() - start)


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write(args, argv, teacher_top1, teacher_params, pruning, rows, seconds):
    plain = [r["plain"] for r in rows]
    dist = [r["distill"] for r in rows]
    diff = [d - p for p, d in zip(plain, dist)]
    command = "PYTHONPATH=. python3 benchmarks/distillation.py" + (" " + " ".join(argv if argv is not None
                                                                               else sys.argv[1:])).rstrip()
    kept = pruning["flops_after"] / pruning["flops_before"]
    student = (f"the teacher with {args.prune_ratio:.0%} of every prunable layer's filters removed (L1): FLOPs "
               f"{pruning['flops_before']:,} -> {pruning['flops_after']:,} ({kept:.2f}x), top-1 right after "
               f"pruning {pruning['top1']:.2%}")
    lines = [
        "# Recovering a pruned model: finetune vs distillation (Fashion-MNIST)",
        "",
        f"Command: `{command}`",
        "",
        f"- data: Fashion-MNIST, {args.train_samples} training images (seeded subset), full 10,000-image test set",
        f"- teacher: small_cnn(input_size=28, width={args.teacher_width}), {teacher_params:,} params, "
        f"{args.teacher_epochs} epochs: test top-1 **{teacher_top1:.2%}**",
        f"- student: {student}, {rows[0]['params']:,} params",
        f"- each recovery run: {args.epochs} epochs, batch {args.batch_size}, momentum SGD, lr {args.recover_lr} "
        f"cosine; "
        f"`distill`: temperature {args.temperature}, alpha {args.alpha}, kd_loss kl, teacher = the trained model",
        f"- seeds {args.seeds} (batch order and augmentation; both runs of a seed share them, and start from "
        f"the same pruned weights)",
        f"- machine: {platform.processor() or platform.machine()}, paddle {paddle.__version__}, "
        f"total {seconds / 60:.1f} min (shared 2-core CPU: times are indicative)",
        "",
        "| seed | plain top-1 | distill top-1 | difference | plain train s | distill train s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['plain']:.2%} | {r['distill']:.2%} | {r['distill'] - r['plain']:+.2%} "
                     f"| {r['plain_s']:.0f} | {r['distill_s']:.0f} |")
    (pm, ps), (dm, ds), (fm, fs) = mean_std(plain), mean_std(dist), mean_std(diff)
    lines += [f"| **mean ± std** | **{pm:.2%} ± {ps:.2%}** | **{dm:.2%} ± {ds:.2%}** | **{fm:+.2%} ± {fs:.2%}** | | |",
              "", f"Distillation better in {sum(d > 0 for d in diff)} of {len(diff)} seeds.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
