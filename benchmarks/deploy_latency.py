"""Deployed latency: does pruning (and int8) make models faster where they run, the Paddle Inference predictor?

For resnet50 and mobilenet_v2 at 224x224 (random weights: latency does not depend on them),
batch 1, 1 thread, oneDNN, every variant exported and all of a model's exports timed
interleaved in one go (report.timing), this measures:

- FLOPs ratio vs predictor latency ratio of `slimkit.prune(ratios=0.3)` at default settings,
  and with channel multiples `round_to` 1, 8 and 16 (the default multiple is chosen from this);
- `slimkit.prune(target_latency_reduction=0.5)`: the measured latency ratio;
- prune + int8 (PTQ, calibrated on random batches) against the float original, and int8
  against the float export of the same model;

and a Fashion-MNIST ResNet-20 pipeline (train -> filter_pruning with target_latency_reduction
0.5 and a sensitivity scan -> finetune) with its accuracy. Writes benchmarks/results/deploy_latency.md.

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/deploy_latency.py          # minutes, nothing else running
    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/deploy_latency.py --smoke  # seconds: small models, tiny runs

Done-when targets (issue #11): default prune's predictor speed-up >= 0.95x its FLOPs speed-up
(resnet50), >= 0.8x (mobilenet_v2); latency target 0.5 -> <= 0.52x measured (resnet50);
prune (0.5x FLOPs) + int8 resnet50 >= 3.3x faster than the float original.
"""

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle

import slimkit
from slimkit.deploy import InferenceModel, export_float, time_runners
from slimkit.core.cpu import cpu_description
from slimkit.pruning.alignment import default_alignment
from slimkit.quant import calibrate, convert, export_quantized, prepare_ptq

RESULTS = Path(__file__).parent / "results" / "deploy_latency.md"
DEFAULT = f"default (round_to {default_alignment()} on this CPU)"
FULL = {"models": ["resnet50", "mobilenet_v2"], "size": 224, "runs": 60, "warmup": 10, "rounds": 6,
        "data": {"name": "fashion_mnist", "train_samples": 8000}, "epochs": 3, "finetune_epochs": 2,
        "pipeline_target": 0.5}
SMOKE = {"models": ["resnet18"], "size": 64, "runs": 6, "warmup": 1, "rounds": 2,
         "data": {"name": "digits"}, "epochs": 1, "finetune_epochs": 1,
         "pipeline_target": 0.3}  # an 8x8 ResNet-20 has little latency to remove


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="small models and tiny runs, to check the script works")
    p.add_argument("--results", default=None, help=f"result page (default {RESULTS}; with --smoke a temp file)")
    p.add_argument("--skip-pipeline", action="store_true", help="only the 224x224 latency measurements")
    return p.parse_args(argv)


def build(name, size):
    paddle.seed(0)
    model = slimkit.build_model(name, num_classes=1000, in_channels=3, input_size=size)
    model.eval()
    return model


def time_exports(models, shape, settings, tmp, quantized=()):
    """{name: Timing} of the models exported (float, or int8 for names in `quantized`) and timed interleaved."""
    runners = {}
    for name, model in models.items():
        folder = Path(tmp) / name
        prefix = export_quantized(model, folder, shape) if name in quantized else export_float(model, folder, shape)
        runners[name] = InferenceModel(prefix, "onednn_int8", 1).runner(shape)
    return time_runners(runners, settings["warmup"], settings["runs"], settings["rounds"])


def int8_of(model, shape):
    observed = prepare_ptq(model, input_shape=shape)
    rng = np.random.RandomState(0)
    calibrate(observed, [(paddle.to_tensor(rng.randn(*shape).astype("float32")), None) for _ in range(4)])
    return convert(observed)


def measure_model(name, settings, tmp):
    """Rows for one model: FLOPs and predictor latency of every variant, timed interleaved."""
    size = settings["size"]
    shape = [1, 3, size, size]
    base = build(name, size)
    variants, flops = {"original": base}, {"original": slimkit.count_flops(base, shape)[0]}
    other = 8 if default_alignment() == 16 else 16
    for label, round_to in ((DEFAULT, None), ("round_to 1", 1), (f"round_to {other}", other)):
        m = copy.deepcopy(base)
        flops[label] = slimkit.prune(m, shape, ratios=0.3, round_to=round_to).flops_after
        variants[label] = m
    target = copy.deepcopy(base)
    reached = slimkit.prune(target, shape, target_latency_reduction=0.5)
    variants["target_latency_reduction 0.5"], flops["target_latency_reduction 0.5"] = target, reached.flops_after
    pruned = variants[DEFAULT]
    variants["original int8"], variants["default prune + int8"] = int8_of(base, shape), int8_of(pruned, shape)
    flops["original int8"], flops["default prune + int8"] = flops["original"], flops[DEFAULT]
    timings = time_exports(variants, shape, settings, tmp, quantized=("original int8", "default prune + int8"))
    return shape, flops, timings, reached.latency


def tried(probe):
    """The selections a latency target tried: predicted -> measured reduction."""
    return "predicted -> measured: " + ", ".join(f"{a:.0%} -> {m:.0%}" for a, m in probe["history"])


def model_table(name, shape, flops, timings, probe):
    base_ms, base_flops = timings["original"].median, flops["original"]
    lines = [f"### {name} {shape}", "",
             "| variant | FLOPs | predictor ms (p10-p90) | speed-up | speed-up / FLOPs speed-up |",
             "|---|---|---|---|---|"]
    for label, t in timings.items():
        speed, flops_speed = base_ms / t.median, base_flops / flops[label]
        lines.append(f"| {label} | {flops[label] / base_flops:.2f}x | {t.median:.2f} ({t.p10:.2f}-{t.p90:.2f}) | "
                     f"{speed:.2f}x | {speed / flops_speed:.2f} |")
    pruned, int8 = timings[DEFAULT].median, timings["default prune + int8"].median
    original_int8 = base_ms / timings["original int8"].median
    lines += ["", f"- int8 over the float export of the same model: original {original_int8:.2f}x, "
                  f"pruned {pruned / int8:.2f}x; prune + int8 over the float original: **{base_ms / int8:.2f}x**",
              f"- target_latency_reduction 0.5: measured inside prune() {probe['latency_reduction']:.1%} "
              f"({probe['attempts']} selection(s), {tried(probe)}); in the interleaved timing above "
              f"{timings['target_latency_reduction 0.5'].median / base_ms:.2f}x of the original", ""]
    return lines


def pipeline_section(settings, smoke, tmp):
    from slimkit import FilterPruning, Finetune, Pipeline

    data = slimkit.load_dataset(**settings["data"])
    model = slimkit.build_model("resnet20", num_classes=data.num_classes, in_channels=data.input_shape[0])
    stages = [Finetune(name="train", epochs=settings["epochs"]),
              FilterPruning(target_latency_reduction=settings["pipeline_target"],
                            sensitivity={"ratios": [0.2, 0.4, 0.6, 0.8], "eval_batches": 1 if smoke else 2}),
              Finetune(name="finetune", epochs=settings["finetune_epochs"], lr=0.01)]
    reports = Pipeline(model, data, stages, out_dir=Path(tmp) / "pipeline", verbose=False,
                       train={"batch_size": 64, "lr": 0.05, "progress": False},
                       report={"latency_runs": settings["runs"], "latency_warmup": settings["warmup"],
                               "latency_rounds": settings["rounds"]}).run()
    from slimkit.report.rows import to_markdown

    reached = reports[2].extra["latency_target"]
    target = settings["pipeline_target"]
    return [to_markdown(reports, f"ResNet-20 on {data.name}: train -> latency target {target} -> finetune").strip()
            .replace("# ", "### ", 1), "",
            f"- the pruning stage measured {reached['latency_reduction']:.1%} latency removed "
            f"(target {target:.0%}, {reached['attempts']} selection(s), {tried(reached)}); "
            f"final top-1 {reports[-1].top1:.2%} vs {reports[1].top1:.2%} before pruning", ""]


def main(argv=None):
    args = parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    results = Path(args.results) if args.results else (Path(tempfile.gettempdir()) / "deploy_latency_smoke.md"
                                                        if args.smoke else RESULTS)
    start = time.perf_counter()
    lines = ["# Deployed latency: pruning and int8 in the Paddle Inference predictor", "",
             f"CPU: {cpu_description()}. Predictor: Paddle Inference with oneDNN, 1 thread, batch 1; every "
             f"model's variants exported and timed interleaved (round-robin, {settings['rounds']} rounds, "
             f"{settings['runs']} timed runs each after {settings['warmup']} warm-up runs), random weights.", "",
             "## Pruning (`ratios=0.3`), channel multiples, latency target, int8", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for name in settings["models"]:
            lines += model_table(name, *measure_model(name, settings, tmp))
        if not args.skip_pipeline:
            lines += ["## Pipeline with the latency target", ""] + pipeline_section(settings, args.smoke, tmp)
    command = "PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/deploy_latency.py" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    lines += ["## Run", "", f"- command: `{command}`",
              f"- wall time: {(time.perf_counter() - start) / 60:.1f} min, paddle {paddle.__version__}"]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
