"""ONNX Runtime next to Paddle Inference: accuracy and latency of a pruned model, float and int8.

Trains a model, prunes half the filters of every prunable conv (L1), recovers, then QAT;
every stage is exported for Paddle Inference and to ONNX (verified). The pruned float
stage and the int8 stage are then each run in both runtimes: top-1 on the test split,
agreement of the classes with Paddle's plain predictor, and median batch-1 latency. Writes
benchmarks/results/onnx_runtime.md with the CPU's ISA flags (int8 speed and exactness in
ONNX Runtime depend on VNNI).

    PYTHONPATH=. python3 benchmarks/onnx_runtime.py            # the run in benchmarks/results/onnx_runtime.md
    PYTHONPATH=. python3 benchmarks/onnx_runtime.py --smoke    # digits, tiny: checks the script works

`--smoke` writes its page to a temporary folder unless `--results` is given: its figures
mean nothing.
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle

import slimkit
from slimkit import QAT, FilterPruning, Finetune, Pipeline
from slimkit.deploy.onnx import OnnxModel, versions
from slimkit.quant import InferenceModel

RESULTS = Path(__file__).parent / "results" / "onnx_runtime.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="digits, one epoch, few timed runs")
    p.add_argument("--data", default="fashion_mnist")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-samples", type=int, default=12000,
                   help="training subset (the test split is always whole); 0 = the whole training split")
    p.add_argument("--runs", type=int, default=200, help="timed runs per runtime")
    p.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
    p.add_argument("--results", default=None, help=f"result page (default: {RESULTS}; smoke: a temporary file)")
    args = p.parse_args(argv)
    if args.smoke:
        args.data, args.model, args.epochs, args.runs, args.train_samples = "digits", "small_cnn", 1, 5, 0
    return args


def run_pipeline(args, out):
    subset = {"train_samples": args.train_samples} if args.train_samples else {}
    data = slimkit.load_dataset(name=args.data, **subset)
    model = slimkit.build_model(args.model, num_classes=data.num_classes, in_channels=data.input_shape[0],
                                input_size=data.input_shape[-1])
    stages = [Finetune(name="train"), FilterPruning(criterion="l1", ratios=0.5),
              Finetune(name="recover", epochs=max(1, args.epochs // 2)), QAT(epochs=1)]
    pipeline = Pipeline(model, data, stages, out_dir=out, export={"formats": ["paddle", "onnx"]},
                        train={"epochs": args.epochs, "progress": not args.smoke})
    return pipeline, {r.stage: r for r in pipeline.run()}


def runners(stage_dir):
    prefix = stage_dir / "inference" / "model"
    return {"Paddle Inference (plain CPU)": InferenceModel(prefix, runtime="cpu"),
            "Paddle Inference (oneDNN)": InferenceModel(prefix, runtime="onednn_int8"),
            "ONNX Runtime": OnnxModel(stage_dir / "onnx" / "model.onnx")}


def measure(stage_dir, engine, shape, runs):
    """Rows of one stage: runtime, top-1, agreement with Paddle's plain predictor, latency."""
    models = runners(stage_dir)
    reference = next(iter(models.values()))
    images = np.concatenate([x.numpy() for x, _ in engine.batches("test")])
    expected = reference.run(images).argmax(1)
    rows = []
    for name, model in models.items():
        top1 = model.evaluate(engine, "test")["top1"]
        agreement = float((model.run(images).argmax(1) == expected).mean())
        rows.append((name, top1, agreement, model.latency(shape, warmup=10, runs=runs)))
    return rows


def cpu_text():
    try:
        from slimkit.core.cpu import cpu_description
    except ImportError:
        return f"{platform.machine()}, {platform.processor() or 'processor unknown'}"
    return cpu_description()


def page(args, reports, tables, minutes):
    command = "PYTHONPATH=. python3 benchmarks/onnx_runtime.py" + (" " + " ".join(sys.argv[1:])).rstrip()
    lines = ["# ONNX Runtime next to Paddle Inference (pruned model, float and int8)", "",
             f"{args.model} on {args.data}"
             + (f" ({args.train_samples:,}-image training subset, {args.epochs} epochs)" if args.train_samples else "")
             + ": train -> L1 filter pruning (half the filters of every prunable conv) "
             "-> recover -> QAT, every stage exported for Paddle Inference and to ONNX, then run in each runtime "
             "(1 thread, batch 1 latency, median).", ""]
    for stage, rows in tables.items():
        record = reports[stage].extra["export"]["onnx"]
        kind = "int8" if record["int8"] else "float"
        lines += [f"## {stage} ({kind})", "", "| runtime | top-1 % | classes as Paddle (plain) | latency ms |",
                  "|---|---|---|---|"]
        lines += [f"| {n} | {t:.2%} | {a:.2%} | {ms:.3f} |" for n, t, a, ms in rows]
        lines += ["", f"- ONNX verification: ok={record['ok']}, opset {record['opset']}, max abs logit difference "
                  f"{record['max_abs_diff']:.3g}, top-1 agreement {record['top1_agreement']:.2%}"
                  + (f"; QDQ arithmetic agreement {record['qdq_arithmetic']['top1_agreement']:.2%}; ops ONNX Runtime "
                     f"runs: {record['ort_ops']}" if record["int8"] else ""), ""]
    lines += ["## Run", "", f"- command: `{command}`", f"- CPU: {cpu_text()}",
              f"- paddle {paddle.__version__}, {', '.join(f'{k} {v}' for k, v in versions().items())}, "
              f"slimkit {slimkit.__version__}", f"- wall time: {minutes:.1f} min", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "run")
        pipeline, reports = run_pipeline(args, out)
        shape = [1, *pipeline.input_shape[1:]]
        tables = {name: measure(out / folder, pipeline.engine, shape, args.runs)
                  for name, folder in (("recover", "03-recover"), ("qat", "04-qat"))}
        text = page(args, reports, tables, (time.perf_counter() - start) / 60)
        results = Path(args.results or (Path(tmp) / "onnx_runtime.md" if args.smoke else RESULTS))
        results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
