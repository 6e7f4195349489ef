"""Wall time and agreement of slimkit's sensitive() and PaddleSlim's L1NormFilterPruner.sensitive().

Both scan the same ResNet-20 (briefly trained on a Fashion-MNIST subset), with the same
ratios (PaddleSlim's fixed 0.1 ... 0.9), the same L1 criterion and the same evaluation
batches. Run by hand (a few minutes on 2 CPU cores):

    PYTHONPATH=. python3 benchmarks/sensitivity_vs_paddleslim.py --train-samples 6000 --eval-batches 2
"""

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle

import slimkit
from slimkit import compat
from slimkit.pruning import analyze
from slimkit.pruning.sensitivity import DEFAULT_RATIOS, format_sensitivity, sensitive


def evaluate_full(engine, model):
    return engine.evaluate(model, "val")["top1"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--train-samples", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--eval-batches", type=int, default=2)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    args = parser.parse_args()

    data = slimkit.load_dataset(name="fashion_mnist", train_samples=args.train_samples)
    engine = slimkit.Engine(data, {"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "progress": False,
                                   "eval_batch_size": args.eval_batch_size})
    paddle.seed(0)
    model = slimkit.build_model(args.model, num_classes=10, in_channels=1)
    start = time.perf_counter()
    engine.train(model)
    print(f"trained in {time.perf_counter() - start:.0f} s; val top-1 {evaluate_full(engine, model):.2%}", flush=True)
    shape = [1, *data.input_shape]

    def evaluate(m):
        return engine.evaluate(m, "val", max_batches=args.eval_batches)["top1"]

    # --- PaddleSlim -------------------------------------------------------------------------
    paddleslim = compat.import_paddleslim_pruners()
    theirs = copy.deepcopy(model)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pruner = paddleslim.dygraph.L1NormFilterPruner(theirs, shape)
        built = time.perf_counter() - start
        ps = pruner.sensitive(eval_func=lambda: evaluate(theirs), sen_file=str(Path(tmp) / "ps.pickle"))
    ps_seconds = time.perf_counter() - start
    print(f"PaddleSlim scan done in {ps_seconds:.0f} s", flush=True)

    # --- slimkit ----------------------------------------------------------------------------
    ours = copy.deepcopy(model)
    start = time.perf_counter()
    graph = analyze(ours, shape)
    traced = time.perf_counter() - start
    sk = sensitive(ours, shape, evaluate, DEFAULT_RATIOS, "l1", graph=graph, progress=False)
    sk_seconds = time.perf_counter() - start

    # --- agreement: groups with one root prune the same filters in both ------------------------
    param_of = {name: layer.weight.name for name, layer in theirs.named_sublayers() if hasattr(layer, "weight")}
    diffs, rows = [], []
    for g in graph.prunable():
        key = param_of.get(g.roots[0])
        if len(g.roots) != 1 or key not in ps:
            continue
        for r in DEFAULT_RATIOS:
            a, b = sk[g.name][r], ps[key].get(round(r, 2))
            if b is not None:
                diffs.append(abs(a - b))
                rows.append((g.name, r, a, b))
    n_ps = sum(len(v) for v in ps.values())
    print(f"model {args.model}, Fashion-MNIST train subset {args.train_samples}, {args.epochs} epoch(s); "
          f"eval {args.eval_batches} x {args.eval_batch_size} val images per trial; ratios 0.1..0.9")
    print(f"PaddleSlim L1NormFilterPruner.sensitive: {ps_seconds:.1f} s ({len(ps)} vars, {n_ps} trials; "
          f"building the pruner {built:.1f} s)")
    print(f"slimkit sensitive:                       {sk_seconds:.1f} s ({len(sk)} groups, "
          f"{len(sk) * len(DEFAULT_RATIOS)} trials; analyze {traced:.1f} s)")
    print(f"time ratio slimkit / PaddleSlim: {sk_seconds / ps_seconds:.2f}x")
    if diffs:
        print(f"losses of {len(rows)} single-root (group, ratio) pairs: max |diff| {max(diffs):.4f}, "
              f"mean |diff| {np.mean(diffs):.4f} (PaddleSlim divides by base + 1e-3)")
    print(format_sensitivity(sk))


if __name__ == "__main__":
    main()
