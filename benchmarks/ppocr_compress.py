"""Compress the real PP-OCR recognisers on unlabelled text lines: PTQ int8, and prune + distill + PTQ int8.

Each recogniser (benchmarks/ppocr.py fetches them) is imported with `slimkit.from_inference` and
compressed by a slimkit Pipeline the way a user would write it, on text lines rendered here
WITHOUT their strings: the original model is the reference. Calibration and distillation use
the train lines; the report's agreement (`ctc_agreement`: the share of lines whose greedy CTC
reading equals the original's) is measured on a separate set of held-out lines. Distillation is
the unlabelled pipeline's training loss, here the KL divergence of the original's per-step
character distribution (`ctc_distill_loss`).

- `ptq`: PTQ int8 alone. The calibration method is chosen first on the train lines (abs_max,
  hist, mse and kl each calibrated, exported and read on a slice of the held-out lines).
- `prune_distill_ptq`: filter_pruning to target_flops_reduction (default 0.4, i.e. <= 0.6x FLOPs;
  criterion `variance`, the removed channels' means folded into the readers' biases, the stage's
  default `compensate`; one ratio for every group, or with --selection greedy the ratios a sensitivity scan
  chooses), distillation from the original in rounds of `--steps` optimizer steps
  (agreement and exact match after each round), then PTQ int8 with the chosen method.

Then every stage's `inference/` export and the original program are read in Paddle Inference
(oneDNN, 1 thread) on the held-out lines (exact match against the true strings), and each export
is timed against the original program, interleaved (slimkit.report.timing.measure, process CPU
time of a one-thread predictor, batch 1, one 48x320 line; medians with 95 % intervals).

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr_compress.py --write            # quiet machine, ~1 h
    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr_compress.py --smoke            # minutes: it runs

Run folders (one per model and variant) are under --out (default runs/ppocr_compress); a rerun
resumes finished stages instead of training again (--fresh starts over).
"""

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from slimkit.core.cpu import cpu_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppocr  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ppocr_compress.md"
ALGOS = ("abs_max", "hist", "mse", "kl")
SHAPE = [1, 3, ppocr.HEIGHT, ppocr.WIDTH]
BATCH = 16  # lines per optimizer step, calibration and evaluation batch
# (largest exact-match drop, least speed-up): the PTQ speed-up asked is 1.3x on AVX2, 2x with VNNI
TARGETS = {"ptq": (0.01, 1.3), "prune_distill_ptq": (0.03, 2.0)}
VNNI_PTQ_SPEEDUP = 2.0


def agreement_for(chars):
    """task.agreement: the share of lines whose CTC reading equals the original's, `chars` the dictionary."""

    def ctc_agreement(outputs, reference_outputs):
        same = [ppocr.ctc_decode(a, chars) == ppocr.ctc_decode(b, chars) for a, b in zip(outputs, reference_outputs)]
        return float(np.mean(same))

    return ctc_agreement


def ctc_distill_loss(outputs, reference_outputs):
    """KL(original || student) of the per-step character distributions (both programs end in a softmax)."""
    import paddle

    eps = 1e-8
    kl = reference_outputs * (paddle.log(reference_outputs + eps) - paddle.log(outputs + eps))
    return kl.sum(axis=-1).mean()


def line_data(folder, train_lines, test_lines):
    """(data splits of preprocessed inputs only, held-out texts, held-out images, dictionary)."""
    texts, images, chars = ppocr.lines_for(folder, test_lines, seed=0)   # seed 0: ppocr_recognisers' lines
    _, train_images, _ = ppocr.lines_for(folder, train_lines, seed=1)    # other lines; their strings unused
    inputs = np.concatenate(list(ppocr.batches(train_images, 64)))
    held_out = np.concatenate(list(ppocr.batches(images, 64)))
    val = max(1, len(inputs) // 10)
    return {"train": inputs[val:], "val": inputs[:val], "test": held_out}, texts, images, chars


def distill_schedule(args, train_samples):
    """(epochs per round, optimizer steps per epoch): as near `--steps` steps per round as the split allows.

    An epoch of the train split is train_samples // BATCH steps, often fewer than `--steps`: a
    round is then several epochs, each capped (train.max_steps_per_epoch) to share the steps evenly.
    """
    per_epoch = max(1, train_samples // BATCH)
    epochs = math.ceil(args.steps / per_epoch)
    return epochs, min(per_epoch, math.ceil(args.steps / epochs))


def pipeline_options(args, chars, steps_per_epoch):
    budget = 2.0 if args.smoke else 60.0
    return {
        "input_shape": SHAPE,
        "task": {"agreement": agreement_for(chars), "loss": ctc_distill_loss},
        "train": {"epochs": 1, "batch_size": BATCH, "eval_batch_size": BATCH, "optimizer": "adam", "lr": args.lr,
                  "weight_decay": 0.0, "schedule": "constant", "max_steps_per_epoch": steps_per_epoch,
                  "progress": False},
        "report": {"latency_runs": 3 if args.smoke else 20, "latency_rounds": 3 if args.smoke else 20,
                   "latency_warmup": 2 if args.smoke else 10, "latency_budget_s": budget},
        "verbose": not args.smoke,
    }


def choose_algo(model, data, texts, images, chars, args, scratch):
    """{algo: exact match on held-out lines} of each calibration method (PTQ without the speed search), and the best."""
    from slimkit.deploy import InferenceModel
    from slimkit.quant import calibrate, convert, export_quantized, prepare_ptq

    lines = min(len(data["train"]), args.calibration_lines)
    calibration = [data["train"][i:i + BATCH] for i in range(0, lines, BATCH)]
    count = min(len(texts), args.choose_lines)
    scores = {}
    for algo in args.algos:
        observed = prepare_ptq(model, algo=algo, input_shape=SHAPE, skip_layers=[] if args.quantize_all else
                               ppocr.kept_float(model))
        calibrate(observed, calibration)
        prefix = export_quantized(convert(observed), scratch / algo, input_shape=SHAPE)
        predictor = InferenceModel(prefix, runtime="onednn_int8", threads=1)
        scores[algo], _ = ppocr.exact_match(predictor.run, images[:count], texts[:count], chars)
        print(f"  calibration {algo}: exact match {scores[algo]:.1%} on {count} held-out lines", flush=True)
    return scores, max(args.algos, key=lambda a: (scores[a], -args.algos.index(a)))


# filter_pruning's ratios for the FLOPs target: one for every group, or greedy on a sensitivity scan
# (each group pruned alone at these ratios, the agreement lost on 4 batches; least loss per FLOP saved first)
SELECTIONS = {"uniform": {"selection": "uniform"},
              "greedy": {"selection": "greedy", "sensitivity": {"ratios": [0.2, 0.4, 0.6], "eval_batches": 4}}}


def variants(args, algo, head, epochs, steps_per_epoch):
    from slimkit import PTQ, FilterPruning, Finetune

    ptq = PTQ(algo=algo, calibration_batches=max(1, args.calibration_lines // BATCH), batch_size=BATCH,
              skip_layers=[] if args.quantize_all else list(head))
    steps = epochs * steps_per_epoch  # per round; named by the optimizer steps taken so far
    distill = [Finetune(name=f"distill_{(i + 1) * steps}", epochs=epochs) for i in range(args.rounds)]
    return {
        "ptq": [ptq],
        "prune_distill_ptq": [FilterPruning(criterion=args.criterion, target_flops_reduction=args.flops_reduction,
                                            **SELECTIONS[args.selection]), *distill, ptq],
    }


def run_variant(name, stages, model, data, options, out, resume):
    from slimkit import Pipeline

    pipeline = Pipeline(model, data, stages, out_dir=out, **options)
    started = time.time()
    reports = pipeline.run(resume=resume)
    print(f"  {name}: {len(reports)} rows in {time.time() - started:.0f} s", flush=True)
    return reports


def stage_prefixes(out, reports):
    """[(stage name, its export prefix)] of a run's rows (the baseline folder first)."""
    from slimkit.run.rundir import folder_names

    folders = folder_names(r.stage for r in reports[1:])
    return [(r.stage, Path(out) / folder / "inference" / "model") for r, folder in zip(reports, folders)]


def score_exports(folder, rows, texts, images, chars):
    """{row: exact match} of the original program and of every export, in Paddle Inference (oneDNN, 1 thread)."""
    from slimkit.deploy import InferenceModel

    scores = {"original": ppocr.exact_match(ppocr.paddle_inference_runner(folder), images, texts, chars)[0]}
    for key, prefix in rows:
        scores[key] = ppocr.exact_match(InferenceModel(prefix, runtime="onednn_int8", threads=1).run, images, texts,
                                        chars)[0]
    return scores


def time_exports(folder, rows, images, args):
    """Measurement of every export against the original program, interleaved (CPU time, batch 1, one line)."""
    from slimkit.deploy import InferenceModel
    from slimkit.report.timing import Precision, measure

    line = next(ppocr.batches(images[:1], 1))
    original = ppocr.paddle_inference_runner(folder)
    runners = {"original": lambda: original(line)}
    for key, prefix in rows:
        predictor = InferenceModel(prefix, runtime="onednn_int8", threads=1)
        runners[key] = (lambda p: lambda: p.run(line))(predictor)
    precision = Precision(warmup=2, min_rounds=3, max_rounds=5, budget=5.0) if args.smoke else \
        Precision(budget=args.timing_budget)
    return measure(runners, compare=[(key, "original") for key, _ in rows], precision=precision)


def main(argv=None):
    args = parse(argv)
    import slimkit

    folders = ppocr.fetch()
    sections = []
    for name in args.models:
        print(f"{name}:", flush=True)
        sections.append(run_model(slimkit, name, folders[name], args))
    detector = None if args.smoke else detector_note(folders)
    page = render_page(sections, detector, args)
    print(page)
    if args.write:
        RESULTS.write_text(page)


def run_model(slimkit, name, folder, args):
    out = Path(args.out) / name
    if args.fresh and out.exists():
        shutil.rmtree(out)
    model = slimkit.from_inference(folder)
    graph = slimkit.pruning.analyze(model, SHAPE)
    data, texts, images, chars = line_data(folder, args.train_lines, args.lines)
    scores, algo = choose_algo(model, data, texts, images, chars, args, out / "calibration")
    epochs, steps_per_epoch = distill_schedule(args, len(data["train"]))
    options = pipeline_options(args, chars, steps_per_epoch)
    rows, reports, head = [], {}, ppocr.kept_float(model)
    for variant, stages in variants(args, algo, head, epochs, steps_per_epoch).items():
        reports[variant] = run_variant(variant, stages, model, data, options, out / variant, resume=not args.fresh)
        rows += [(f"{variant}/{stage}", prefix) for stage, prefix in stage_prefixes(out / variant, reports[variant])
                 if not stage.startswith("baseline")]
    exact = score_exports(folder, rows, texts, images, chars)
    timing = time_exports(folder, rows, images, args)
    return {"name": name, "prunable": (len(graph.prunable()), len(graph.groups)), "skipped": graph.skipped(),
            "algos": scores, "algo": algo, "head": head, "reports": reports, "exact": exact,
            "timing": timing, "rows": rows}


def detector_note(folders):
    """One sentence: what slimkit's export of PP-OCRv5_mobile_det does in the oneDNN and the plain CPU predictor."""
    import tempfile

    import slimkit
    from slimkit.deploy import InferenceModel
    from slimkit.deploy.paddle_inference import export_stage

    shape = [1, 3, 320, 320]
    x = np.random.RandomState(0).rand(*shape).astype("float32")
    outcome = {}
    with tempfile.TemporaryDirectory() as scratch:
        prefix = export_stage(slimkit.from_inference(folders["PP-OCRv5_mobile_det"]), Path(scratch), shape)
        for runtime in ("onednn_int8", "cpu"):
            try:
                outcome[runtime] = InferenceModel(prefix, runtime=runtime, threads=1).run(x)
            except Exception as err:  # noqa: BLE001  (what the predictor says is the finding)
                outcome[runtime] = f"fails ({type(err).__name__}: {str(err).strip().splitlines()[0][:120]})"
    said = {k: v if isinstance(v, str) else f"runs (output {list(v.shape)})" for k, v in outcome.items()}
    same = ""
    if not any(isinstance(v, str) for v in outcome.values()):
        same = f", largest difference between the two {np.abs(outcome['onednn_int8'] - outcome['cpu']).max():.1e}"
    return (f"PP-OCRv5_mobile_det: slimkit's export of the imported detector (legacy `.pdmodel`, {shape}) "
            f"{said['onednn_int8']} in the oneDNN predictor and {said['cpu']} with oneDNN off{same}; the original "
            "`.json` fails in Paddle 3.3's oneDNN predictor (docs/exported-models.md).")


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ppocr.RECOGNISERS), choices=ppocr.RECOGNISERS)
    parser.add_argument("--lines", type=int, default=200, help="held-out lines scored (exact match, agreement)")
    parser.add_argument("--train-lines", type=int, default=1200, help="unlabelled lines to calibrate and distill on")
    parser.add_argument("--calibration-lines", type=int, default=320)
    parser.add_argument("--choose-lines", type=int, default=100, help="held-out lines the calibration method is "
                                                                      "chosen on")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per distillation round")
    parser.add_argument("--rounds", type=int, default=4, help="distillation rounds (exact match after each)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--flops-reduction", type=float, default=0.4)
    parser.add_argument("--criterion", default="variance", help="filter_pruning's criterion (l1, variance, ...)")
    parser.add_argument("--selection", default="uniform", choices=list(SELECTIONS),
                        help="filter_pruning's ratios: uniform, or greedy on a sensitivity scan (~15 min per model)")
    parser.add_argument("--timing-budget", type=float, default=120.0, help="seconds of interleaved timing per model")
    parser.add_argument("--quantize-all", action="store_true",
                        help="quantize every layer (by default the CTC head and the neck's 1x3 convs stay float)")
    parser.add_argument("--out", default="runs/ppocr_compress")
    parser.add_argument("--fresh", action="store_true", help="start the run folders over instead of resuming")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/ppocr_compress.md")
    parser.add_argument("--smoke", action="store_true", help="tiny: a few lines and steps, to check it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.lines, args.train_lines, args.calibration_lines, args.choose_lines = 16, 48, 16, 8
        args.steps, args.rounds, args.algos = 2, 1, args.algos[:2]
        args.out = args.out if args.out != "runs/ppocr_compress" else "runs/ppocr_compress_smoke"
    args.command = "PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr_compress.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    return args


def render_page(sections, detector, args):
    from slimkit.core.cpu import cpu_description

    lines = ["# PP-OCR recognisers compressed on unlabelled lines", "", f"    {args.command}", "",
             _explanation(args), "", f"CPU: {cpu_description()}.", ""]
    for section in sections:
        lines += _model_section(section, args)
    if detector:
        lines += [detector, ""]
    return "\n".join(lines)


def _explanation(args):
    return (f"{args.train_lines} unlabelled rendered lines (train split, their strings never used) calibrate and "
            f"distill; {args.lines} other lines are held out. Agreement: the share of held-out lines whose "
            "greedy CTC reading equals the original's (the pipeline's `task.agreement`, eager model). Exact "
            "match: the stage's `inference/` export in Paddle Inference (oneDNN, 1 thread) against the true "
            "strings. Latency: batch 1, one 48x320 line, every export timed interleaved with the original program "
            "(slimkit.report.timing.measure, process CPU time); medians with 95 % intervals.")


def _model_section(section, args):
    name, exact, timing = section["name"], section["exact"], section["timing"]
    prunable, groups = section["prunable"]
    algos = ", ".join(f"{a} {s:.1%}" for a, s in section["algos"].items())
    original = timing.timing("original")
    lines = [f"## {name}", "",
             f"Channel groups: {prunable} of {groups} prunable (`slimkit.pruning.analyze`); not prunable: "
             + "; ".join(f"`{k}`: {v}" for k, v in section["skipped"].items()) + ".", "",
             f"Calibration methods (exact match of the int8 export on {args.choose_lines} held-out lines): {algos}; "
             f"used: `{section['algo']}`" + ("" if args.quantize_all else "; kept float: "
                                            + ", ".join(f"`{n}`" for n in section["head"]) + " (the CTC head and "
                                            "the neck's 1x3 convs: int8 in oneDNN they lose lines the same export "
                                            "reads without oneDNN; --quantize-all quantizes them)") + ".", "",
             "| row | FLOPs | distill loss | agreement | exact match | vs original | latency ms | speed-up | target |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| original program | | | 100 % | {exact['original']:.1%} | | {_ms(original)} | 1 | |"]
    for key, _ in section["rows"]:
        variant, stage = key.split("/", 1)
        report = next(r for r in section["reports"][variant] if r.stage == stage)
        base = section["reports"][variant][0]
        agreement = report.metrics.get("ctc_agreement")
        ratio = timing.ratio(key, "original")
        speed = f"{1 / ratio.value:.2f}x [{1 / ratio.high:.2f}, {1 / ratio.low:.2f}]"
        loss = report.extra.get("train_loss")  # the stage's mean training loss (ctc_distill_loss), if it trained
        lines.append(f"| {key} | {report.flops / base.flops:.2f}x | {'' if loss is None else f'{loss:.3f}'} | "
                     f"{'' if agreement is None else f'{agreement:.1%}'} | {exact[key]:.1%} | "
                     f"{exact[key] - exact['original']:+.1%} | {_ms(timing.timing(key))} | {speed} | "
                     f"{_verdict(variant, stage, section, exact[key] - exact['original'], ratio)} |")
    note = timing.noise_note()
    return lines + ["", *([f"Timing: {note}.", ""] if note else [])]


def _ms(t):
    return f"{t.median:.1f} [{t.low:.1f}, {t.high:.1f}]"


def _verdict(variant, stage, section, drop, ratio):
    last = section["reports"][variant][-1].stage
    if stage != last:
        return ""
    max_drop, min_speed = TARGETS[variant]
    if variant == "ptq" and "avx512_vnni" in cpu_features():
        min_speed = VNNI_PTQ_SPEEDUP
    missed = []
    if drop < -max_drop:
        missed.append(f"exact match {drop * 100:+.1f} points (at most -{max_drop * 100:.0f} allowed)")
    if 1 / ratio.value < min_speed:
        missed.append(f"speed-up {1 / ratio.value:.2f}x (at least {min_speed}x asked)")
    return "met" if not missed else "missed: " + "; ".join(missed)


if __name__ == "__main__":
    main()
