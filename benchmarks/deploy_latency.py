"""Deployed latency: does pruning (and int8) make models faster where they run, the Paddle Inference predictor?

For resnet50 and mobilenet_v2 at 224x224 (random weights: latency does not depend on them),
batch 1, 1 thread, oneDNN, every variant exported and all of a model's exports timed
interleaved in one go (report.timing.measure: a new order every round, process CPU time,
until every ratio to the original has a 95 % interval narrower than `width`), this measures,
each figure with its interval:

- FLOPs ratio vs predictor latency ratio of `slimkit.prune(ratios=0.3)` at default settings,
  and with channel multiples `round_to` 1, 8 and 16 (the default multiple is chosen from this);
- `slimkit.prune(target_latency_reduction=0.5)`: the latency ratio it measured (its interval's
  upper end must be within the target's tolerance), and again in the interleaved timing;
- prune + int8 (PTQ, calibrated on random batches) against the float original, and int8
  against the float export of the same model;

and a Fashion-MNIST ResNet-20 pipeline (train -> filter_pruning with target_latency_reduction
0.5 and a sensitivity scan -> finetune) with its accuracy. Writes benchmarks/results/deploy_latency.md.

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/deploy_latency.py --repeats 3   # ~1.5 h, nothing else running
    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/deploy_latency.py              # one run, ~30 min
    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/deploy_latency.py --smoke      # a minute: small models

`--repeats N` runs the measurement N times in a row, each in a fresh process, and adds a
table of the key figures of every run with their intervals: do the intervals overlap, and
did the latency target land within its tolerance every time?

Targets: default prune's predictor speed-up >= 0.95x its FLOPs speed-up
(resnet50), >= 0.8x (mobilenet_v2); latency target 0.5 -> <= 0.52x measured (resnet50);
prune (0.5x FLOPs) + int8 resnet50 >= 3.3x faster than the float original.
"""

import argparse
import copy
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle

import slimkit
from slimkit.core.cpu import cpu_description
from slimkit.deploy import InferenceModel, Precision, export_float, measure
from slimkit.pruning.alignment import default_alignment
from slimkit.pruning.latency import TOLERANCE
from slimkit.quant import calibrate, convert, export_quantized, prepare_ptq
from slimkit.report.intervals import Interval

RESULTS = Path(__file__).parent / "results" / "deploy_latency.md"
DEFAULT = f"default (round_to {default_alignment()} on this CPU)"
TARGET, ORIGINAL = "target_latency_reduction 0.5", "original"
FULL = {"models": ["resnet50", "mobilenet_v2"], "size": 224, "warmup": 10, "width": 0.03, "budget": 300,
        "target_width": 0.04, "target_budget": 120,
        "data": {"name": "fashion_mnist", "train_samples": 8000}, "epochs": 3, "finetune_epochs": 2,
        "pipeline_target": 0.5}
SMOKE = {"models": ["resnet18"], "size": 64, "warmup": 1, "width": 0.1, "budget": 5, "target_width": 0.2,
         "target_budget": 3, "data": {"name": "digits"}, "epochs": 1, "finetune_epochs": 1,
         "pipeline_target": 0.3}  # an 8x8 ResNet-20 has little latency to remove


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="small models and short timings, to check the script works")
    p.add_argument("--results", default=None, help=f"result page (default {RESULTS}; with --smoke a temp file)")
    p.add_argument("--skip-pipeline", action="store_true", help="only the 224x224 latency measurements")
    p.add_argument("--repeats", type=int, default=1, help="run the measurement this many times in a row, each in "
                                                          "a fresh process, and compare the runs")
    p.add_argument("--json", default=None, help="also write the run's key figures to this JSON file")
    return p.parse_args(argv)


def precision(settings, target=False):
    key = "target_" if target else ""
    return Precision(warmup=settings["warmup"], width=settings[f"{key}width"], budget=settings[f"{key}budget"])


def build(name, size):
    paddle.seed(0)
    model = slimkit.build_model(name, num_classes=1000, in_channels=3, input_size=size)
    model.eval()
    return model


def time_exports(models, shape, settings, tmp, quantized=()):
    """The Measurement of the models exported (float, or int8 for names in `quantized`), timed interleaved."""
    runners = {}
    for name, model in models.items():
        folder = Path(tmp) / name
        prefix = export_quantized(model, folder, shape) if name in quantized else export_float(model, folder, shape)
        runners[name] = InferenceModel(prefix, "onednn_int8", 1).runner(shape)
    return measure(runners, [(n, ORIGINAL) for n in runners if n != ORIGINAL], precision(settings))


def int8_of(model, shape):
    observed = prepare_ptq(model, input_shape=shape)
    rng = np.random.RandomState(0)
    calibrate(observed, [(paddle.to_tensor(rng.randn(*shape).astype("float32")), None) for _ in range(4)])
    return convert(observed)


def measure_model(name, settings, tmp):
    """FLOPs and the interleaved Measurement of every variant of one model, and what the latency target measured."""
    size = settings["size"]
    shape = [1, 3, size, size]
    base = build(name, size)
    variants, flops = {ORIGINAL: base}, {ORIGINAL: slimkit.count_flops(base, shape)[0]}
    other = 8 if default_alignment() == 16 else 16
    for label, round_to in ((DEFAULT, None), ("round_to 1", 1), (f"round_to {other}", other)):
        m = copy.deepcopy(base)
        flops[label] = slimkit.prune(m, shape, ratios=0.3, round_to=round_to).flops_after
        variants[label] = m
    target = copy.deepcopy(base)
    reached = slimkit.prune(target, shape, target_latency_reduction=0.5, timing=precision(settings, target=True))
    variants[TARGET], flops[TARGET] = target, reached.flops_after
    pruned = variants[DEFAULT]
    variants["original int8"], variants["default prune + int8"] = int8_of(base, shape), int8_of(pruned, shape)
    flops["original int8"], flops["default prune + int8"] = flops[ORIGINAL], flops[DEFAULT]
    found = time_exports(variants, shape, settings, tmp, quantized=("original int8", "default prune + int8"))
    return shape, flops, found, reached.latency


def speedup(found, name, reference=ORIGINAL):
    """Interval of `reference`'s latency over `name`'s: how many times faster `name` runs."""
    return found.ratio(reference, name)


def tried(probe):
    """The selections a latency target tried: predicted -> measured reduction (the interval's low-high)."""
    return "predicted -> measured: " + ", ".join(f"{h[0]:.0%} -> {h[1]:.0%} ({h[2]:.0%}-{h[3]:.0%})"
                                                  for h in probe["history"])


def model_table(name, shape, flops, found, probe):
    base_flops = flops[ORIGINAL]
    lines = [f"### {name} {shape}", "",
             "| variant | FLOPs | predictor ms (95 % interval) | speed-up (95 % interval) "
             "| speed-up / FLOPs speed-up |",
             "|---|---|---|---|---|"]
    for label in found.values:
        t = found.timing(label)
        faster = Interval(1.0, 1.0, 1.0, found.rounds) if label == ORIGINAL else speedup(found, label)
        flops_speed = base_flops / flops[label]
        lines.append(f"| {label} | {flops[label] / base_flops:.2f}x | {t.median:.2f} ({t.low:.2f}-{t.high:.2f}) | "
                     f"{faster.text(2, 'x')} | {faster.value / flops_speed:.2f} ({faster.low / flops_speed:.2f}-"
                     f"{faster.high / flops_speed:.2f}) |")
    ratio = Interval.from_dict(probe["latency_ratio"])
    lines += ["", f"- int8 over the float export of the same model: original "
                  f"{speedup(found, 'original int8').text(2, 'x')}, pruned "
                  f"{speedup(found, 'default prune + int8', DEFAULT).text(2, 'x')}; prune + int8 over the float "
                  f"original: **{speedup(found, 'default prune + int8').text(2, 'x')}**",
              f"- target_latency_reduction 0.5: measured inside prune() **{ratio.text(3, 'x')}** of the original "
              f"({'reached' if probe['reached'] else 'NOT reached'}: upper end within {0.5 + TOLERANCE:.2f}x; "
              f"{probe['attempts']} selection(s), {tried(probe)}); in the interleaved timing above "
              f"{found.ratio(TARGET, ORIGINAL).text(3, 'x')}",
              f"- timing: {found.rounds} rounds in {found.seconds:.0f} s, "
              + ("every ratio's interval within " f"{found.precision.width:.0%}" if found.converged
                 else found.noise_note()), ""]
    return lines


def key_figures(name, flops, found, probe):
    """The figures the repeated runs are compared on, as intervals (dicts)."""
    def scaled(interval, factor):
        return Interval(interval.value * factor, interval.low * factor, interval.high * factor, interval.rounds)

    pruned = speedup(found, DEFAULT)
    return {f"{name}: default prune, speed-up / FLOPs speed-up": scaled(pruned, flops[DEFAULT] / flops[ORIGINAL]),
            f"{name}: prune + int8 vs float original": speedup(found, "default prune + int8"),
            f"{name}: int8 vs float export, original": speedup(found, "original int8"),
            f"{name}: latency target 0.5, ratio measured in prune()": Interval.from_dict(probe["latency_ratio"]),
            f"{name}: latency target 0.5, ratio in the interleaved timing": found.ratio(TARGET, ORIGINAL)}


def pipeline_section(settings, smoke, tmp):
    from slimkit import FilterPruning, Finetune, Pipeline

    data = slimkit.load_dataset(**settings["data"])
    model = slimkit.build_model("resnet20", num_classes=data.num_classes, in_channels=data.input_shape[0])
    stages = [Finetune(name="train", epochs=settings["epochs"]),
              FilterPruning(target_latency_reduction=settings["pipeline_target"],
                            sensitivity={"ratios": [0.2, 0.4, 0.6, 0.8], "eval_batches": 1 if smoke else 2},
                            latency_ci_width=settings["target_width"], latency_budget_s=settings["target_budget"]),
              Finetune(name="finetune", epochs=settings["finetune_epochs"], lr=0.01)]
    reports = Pipeline(model, data, stages, out_dir=Path(tmp) / "pipeline", verbose=False,
                       train={"batch_size": 64, "lr": 0.05, "progress": False},
                       report={"latency_warmup": settings["warmup"], "latency_ci_width": settings["width"],
                               "latency_budget_s": settings["budget"]}).run()
    from slimkit.report.rows import to_markdown

    reached = reports[2].extra["latency_target"]
    target = settings["pipeline_target"]
    ratio = Interval.from_dict(reached["latency_ratio"])
    return [to_markdown(reports, f"ResNet-20 on {data.name}: train -> latency target {target} -> finetune").strip()
            .replace("# ", "### ", 1), "",
            f"- the pruning stage measured {ratio.text(3, 'x')} of the original latency (target {1 - target:.2f}x, "
            f"{'reached' if reached['reached'] else 'NOT reached'}; {reached['attempts']} selection(s), "
            f"{tried(reached)}); final top-1 {reports[-1].top1:.2%} vs {reports[1].top1:.2%} before pruning", ""], \
        {f"resnet20 pipeline: latency target {target}, ratio measured": ratio}


def one_run(args, settings):
    """The page's lines and the key figures {name: Interval} of one run."""
    lines, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in settings["models"]:
            shape, flops, found, probe = measure_model(name, settings, tmp)
            lines += model_table(name, shape, flops, found, probe)
            figures.update(key_figures(name, flops, found, probe))
        if not args.skip_pipeline:
            section, more = pipeline_section(settings, args.smoke, tmp)
            lines += ["## Pipeline with the latency target", ""] + section
            figures.update(more)
    return lines, figures


def repeated(argv, repeats, tmp):
    """Run this script `repeats` times in a row, each in its own process; [(page lines, figures)] per run."""
    runs = []
    for i in range(repeats):
        out = Path(tmp) / f"run{i}"
        child = [a for a in argv if a not in ("--repeats", str(repeats))] + ["--results", f"{out}.md", "--json",
                                                                             f"{out}.json"]
        subprocess.run([sys.executable, __file__, *child], check=True)
        data = json.loads(Path(f"{out}.json").read_text())
        runs.append((data["lines"], {k: Interval.from_dict(v) for k, v in data["figures"].items()}))
    return runs


def runs_table(runs):
    """The key figures of every run side by side: do the intervals overlap, did the target land each time?"""
    names = list(runs[0][1])
    lines = ["| figure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | intervals overlap |",
             "|---|" + "---|" * (len(runs) + 1)]
    for name in names:
        cells = [r[1][name] for r in runs]
        overlap = max(c.low for c in cells) <= min(c.high for c in cells)
        lines.append(f"| {name} | " + " | ".join(c.text(3, "x") for c in cells) + f" | {'yes' if overlap else 'NO'} |")
    for name in (n for n in names if "latency target" in n and "measured" in n):
        limit = 1 - float(re.search(r"latency target ([0-9.]+)", name).group(1)) + TOLERANCE
        within = [r[1][name].high <= limit for r in runs]
        lines.append(f"\n- {name}: upper end within {limit:.2f}x in {sum(within)} of {len(runs)} runs")
    return lines


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    results = Path(args.results) if args.results else (Path(tempfile.gettempdir()) / "deploy_latency_smoke.md"
                                                        if args.smoke else RESULTS)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.repeats > 1:
            runs = repeated(argv, args.repeats, tmp)
        else:
            runs = [one_run(args, settings)]
    lines = ["# Deployed latency: pruning and int8 in the Paddle Inference predictor", "",
             f"CPU: {cpu_description()}. Predictor: Paddle Inference with oneDNN, 1 thread, batch 1; every "
             f"model's variants exported and timed interleaved ({precision(settings).describe()}), random weights. "
             f"The latency target times each selection against the original until its interval is within "
             f"{settings['target_width']:.0%} (at most {settings['target_budget']} s per measurement).", ""]
    if len(runs) > 1:
        lines += [f"## {len(runs)} runs in a row (each in a fresh process)", "", *runs_table(runs), "",
                  f"The tables below are those of run {len(runs)}.", ""]
    lines += ["## Pruning (`ratios=0.3`), channel multiples, latency target, int8", "", *runs[-1][0]]
    command = "PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/deploy_latency.py" + (
        " " + " ".join(a for a in argv if not a.startswith("--json") and a != args.json)).rstrip()
    lines += ["## Run", "", f"- command: `{command}`",
              f"- wall time: {(time.perf_counter() - start) / 60:.1f} min, paddle {paddle.__version__}"]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"lines": runs[-1][0],
                                               "figures": {k: v.to_dict() for k, v in runs[-1][1].items()}}))
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
