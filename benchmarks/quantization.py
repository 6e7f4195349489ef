"""What QAT costs and buys at the end of the full chain: prune -> distill -> QAT on Fashion-MNIST.

Runs `configs/fashion_mnist_full.yaml` (a seeded training subset, few epochs: see the
config) and writes the per-stage report table (FLOPs, params, accuracy, size, latency)
plus the quantization stage's own figures to benchmarks/results/quantization.md. The QAT
row is measured on the exported int8 files reloaded with Paddle Inference.

    PYTHONPATH=. python3 benchmarks/quantization.py            # the run in benchmarks/results/quantization.md
    PYTHONPATH=. python3 benchmarks/quantization.py --qat-only # train -> QAT, if pruning/distillation are unavailable

Targets checked: exported int8 model <= 0.3x the size of the same model exported in
float, and <= 0.5 point further top-1 loss than the stage before QAT.
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import paddle

import slimkit
from slimkit.report.rows import human_bytes, to_markdown
from slimkit.run.config import build_pipeline, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "fashion_mnist_full.yaml"
RESULTS = Path(__file__).parent / "results" / "quantization.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--qat-only", action="store_true", help="keep only the training and qat stages")
    p.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
    p.add_argument("--results", default=str(RESULTS))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    config = load_config(args.config)
    if args.qat_only:
        config.stages = [s for s in config.stages if s.type_name in ("finetune", "qat")]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = build_pipeline(config, args.out or tmp)
        reports = pipeline.run()
    minutes = (time.perf_counter() - start) / 60
    qat = next(i for i, r in enumerate(reports) if r.strategy == "qat")
    q, before = reports[qat], reports[qat - 1]
    loss = (before.top1 - q.top1) * 100
    ratio = q.extra["size_vs_float_export"]
    command = "PYTHONPATH=. python3 benchmarks/quantization.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    lines = [to_markdown(reports, "Quantization at the end of prune -> distill -> QAT (Fashion-MNIST)").rstrip(), "",
             "## Quantization stage", "",
             f"- exported int8 files: {human_bytes(q.size_bytes)}; the same model exported in float: "
             f"{human_bytes(q.extra['float_export_bytes'])} -> **{ratio:.3f}x** (target <= 0.3x: "
             f"{'met' if ratio <= 0.3 else 'missed'})",
             f"- top-1 of the reloaded int8 export {q.top1:.2%} vs {before.top1:.2%} before QAT -> "
             f"**{loss:+.2f} points** lost (target <= 0.5: {'met' if loss <= 0.5 else 'missed'}); "
             f"eager fake-quant model: {q.extra['eager_top1']:.2%}",
             f"- CPU execution ({q.extra['runtime']}): {q.extra['cpu_execution']}; predictor latency batch 1: "
             f"int8 {q.latency_ms:.3f} ms vs float export {q.extra['float_export_latency_ms']:.3f} ms",
             f"- ops Paddle Inference runs after its passes: {q.extra['optimized_ops']}",
             f"- the qat row's latency is the Paddle Inference predictor's ({q.latency_method}); the other rows "
             f"are eager dygraph latencies, so compare the qat latency with the float export's, not with them",
             "", "## Run", "", f"- command: `{command}`", f"- config: `{Path(args.config).relative_to(ROOT)}`"
             + (" (training and qat stages only)" if args.qat_only else ""),
             f"- wall time: {minutes:.1f} min on {platform.machine()} ({paddle.__version__=}, "
             f"slimkit {slimkit.__version__}), 2 shared CPU cores", ""]
    Path(args.results).write_text("\n".join(lines))
    print("\n".join(lines[-12:]))


if __name__ == "__main__":
    main()
