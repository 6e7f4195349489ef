"""Is slimkit's PTQ int8 faster than float where it is deployed, and which layers does oneDNN run slower in int8?

For resnet50 and mobilenet_v2 at 224x224 and a PP-OCR-like text recogniser at 48x320
(tests/text_recognizer.py: PP-LCNet-style backbone with hardswish and squeeze-excitation,
SVTR-like neck of LayerNorm / qkv Linear / matmul attention / GELU MLP, CTC head Linear),
random weights (latency does not depend on them), calibrated on random batches, batch 1,
1 thread, Paddle Inference with oneDNN, every variant of a model timed interleaved
(slimkit.quant.speed.time_exports: round-robin rounds, medians with p10-p90):

- float: the float export;
- int8: slimkit's PTQ export, every Conv2D and Linear quantized;
- each candidate group of the never-slower search kept float alone (what oneDNN runs slower
  in int8 on this CPU), with the int8/float kernel counts of the optimized program;
- searched: the layers `float_fallback: always` keeps float, and its speed-up.

Writes benchmarks/results/ptq_speed.md (ptq_speed_<isa>.md with --isa). Run it on a quiet
machine; the CPU flags are printed on the page.

    PYTHONPATH=. python3 benchmarks/ptq_speed.py                      # minutes, nothing else running
    PYTHONPATH=. python3 benchmarks/ptq_speed.py --isa AVX2           # oneDNN limited to AVX2 (no VNNI, no AMX)
    PYTHONPATH=. python3 benchmarks/ptq_speed.py --isa AVX512_CORE_VNNI
    PYTHONPATH=. python3 benchmarks/ptq_speed.py --clock thread       # busy machine: CPU time of the one thread
    PYTHONPATH=. python3 benchmarks/ptq_speed.py --smoke              # seconds: small inputs, tiny runs

`--isa` sets ONEDNN_MAX_CPU_ISA before oneDNN starts: the same machine then runs the kernels
an AVX2-only or a VNNI-without-AMX CPU would (Paddle's own non-oneDNN kernels are unchanged).
Targets (recogniser, 1 thread): int8 >= 1.3x faster than float on AVX2, >= 2x with VNNI.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
FULL = {"models": ["resnet50", "mobilenet_v2", "text_recognizer"], "runs": 60, "warmup": 10, "rounds": 6,
        "calibration": 4}
SMOKE = {"models": ["mobilenet_v2", "text_recognizer"], "runs": 4, "warmup": 1, "rounds": 2, "calibration": 1,
         "small": True}
SHAPES = {"resnet50": [1, 3, 224, 224], "mobilenet_v2": [1, 3, 224, 224], "text_recognizer": [1, 3, 48, 320]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="small models and tiny runs, to check the script works")
    p.add_argument("--isa", default=None, help="ONEDNN_MAX_CPU_ISA for this run, e.g. AVX2, AVX512_CORE_VNNI")
    p.add_argument("--clock", choices=["wall", "thread"], default="wall",
                   help="wall time (default), or the predictor thread's CPU time (for a busy machine)")
    p.add_argument("--models", nargs="*", default=None, help=f"subset of {FULL['models']}")
    p.add_argument("--results", default=None, help="result page (default benchmarks/results/ptq_speed[_isa].md; "
                                                    "with --smoke a temp file)")
    return p.parse_args(argv)


def build(name, small=False):
    import paddle

    import slimkit

    sys.path.insert(0, str(ROOT / "tests"))
    from text_recognizer import text_recognizer

    paddle.seed(0)
    if name == "text_recognizer":
        model = text_recognizer(scale=0.25 if small else 0.95, num_classes=100 if small else 6625)
    else:
        model = slimkit.build_model(name, num_classes=1000, in_channels=3, input_size=64 if small else 224)
    model.eval()
    return model


def kernel_counts(prefix):
    """'convs 52/53 int8, fc 1/1 int8' from the program the predictor runs."""
    from slimkit.deploy import InferenceModel

    counts = {}
    for op in InferenceModel(prefix, "onednn_int8").optimized_program().global_block().ops:
        if op.type in ("fused_conv2d", "conv2d", "depthwise_conv2d", "fc", "matmul_v2", "fused_matmul"):
            kind = "conv" if "conv" in op.type else ("fc" if op.type == "fc" else "matmul")
            int8 = op.has_attr("mkldnn_data_type") and op.attr("mkldnn_data_type") == "int8"
            total, quantized = counts.get(kind, (0, 0))
            counts[kind] = (total + 1, quantized + int8)
    return ", ".join(f"{k} {q}/{t} int8" for k, (t, q) in sorted(counts.items()))


def measure_model(name, settings, tmp, clock):
    import numpy as np

    from slimkit.deploy import InferenceModel, export_float
    from slimkit.quant import calibrate, prepare_ptq, quantized_layer_names
    from slimkit.quant.speed import FLOAT, VariantTimer, candidate_groups, keep_float_search

    shape = list(SHAPES[name])
    if settings.get("small"):
        shape = [1, 3, 48, 64] if name == "text_recognizer" else [1, 3, 64, 64]
    model = build(name, settings.get("small", False))
    observed = prepare_ptq(model, input_shape=shape)
    rng = np.random.RandomState(0)
    calibrate(observed, [rng.randn(*shape).astype("float32") for _ in range(settings["calibration"])], progress=False)
    folder = Path(tmp) / name
    timer = VariantTimer(observed, export_float(model, folder / "float", shape), folder / "variants", shape, shape,
                         lambda prefix: InferenceModel(prefix, "onednn_int8", threads=1),
                         (settings["warmup"], settings["runs"], settings["rounds"], clock))
    groups = candidate_groups(model, quantized_layer_names(observed), shape)
    variants = {FLOAT: FLOAT, "int8": frozenset(), **{g.label: frozenset(g.layers) for g in groups}}
    timings = timer(variants)  # every variant of the model in one interleaved timing
    decision = keep_float_search(groups, timer, mode="always")
    # VariantTimer exports the i-th predictor it builds into folder/<i> (0 is the float export's).
    counts = {v: kernel_counts(timer.folder / str(i) / "model") for i, v in enumerate(timer.runners) if v != FLOAT}
    return {"shape": shape, "groups": groups, "timings": timings, "decision": decision, "counts": counts,
            "variants": variants}


def model_table(name, result):
    timings, float_ms = result["timings"], result["timings"]["float"].median
    sizes = {g.label: len(g.layers) for g in result["groups"]}
    lines = [f"### {name} {result['shape']}", "", "| variant | layers kept float | kernels run in int8 (optimized "
             "program) | predictor ms (p10-p90) | speed-up vs float |", "|---|---|---|---|---|"]
    for label, variant in result["variants"].items():
        t = timings[label]
        kept = "all (float export)" if variant == "float" else (sizes.get(label, 0) if label != "int8" else 0)
        count = "-" if variant == "float" else result["counts"].get(variant, "")
        title = label if label in ("float", "int8") else f"int8, {label} float"
        lines.append(f"| {title} | {kept} | {count} | {t.median:.2f} ({t.p10:.2f}-{t.p90:.2f}) | "
                     f"{float_ms / t.median:.2f}x |")
    d = result["decision"]
    lines += ["", f"- search (`float_fallback: always`): {d.note()}",
              f"- searched int8 over float, both timed in the search's last interleaved round: "
              f"**{d.float.median / d.int8.median:.2f}x**", ""]
    return lines


def main(argv=None):
    args = parse_args(argv)
    if args.isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa  # read by oneDNN at its first primitive: before paddle runs one
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from slimkit.core.cpu import cpu_description

    settings = dict(SMOKE if args.smoke else FULL)
    models = args.models or settings["models"]
    clock = time.thread_time if args.clock == "thread" else None
    suffix = f"_{args.isa.lower()}" if args.isa else ""
    results = Path(args.results) if args.results else (
        Path(tempfile.gettempdir()) / "ptq_speed_smoke.md" if args.smoke else RESULTS / f"ptq_speed{suffix}.md")
    start = time.perf_counter()
    limit = args.isa or "none (the CPU's best)"
    lines = ["# PTQ int8 vs float in Paddle Inference (oneDNN)", "",
             f"CPU: {cpu_description()}; oneDNN ISA limit: {limit}. Predictor: Paddle Inference with oneDNN, "
             f"1 thread, batch 1; random weights, calibrated on {settings['calibration']} random batches; "
             f"every variant of a model timed interleaved (round-robin, {settings['rounds']} rounds, "
             f"{settings['runs']} timed runs each after {settings['warmup']} warm-up runs), clock: "
             f"{'CPU time of the predictor thread' if clock else 'wall'}.", "",
             "Variants: `float` the float export; `int8` every Conv2D and Linear quantized (slimkit's observer "
             "placement); `int8, <group> float` that candidate group of the never-slower search kept float alone.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            print(f"{name} ...", flush=True)
            lines += model_table(name, measure_model(name, settings, tmp, clock))
    command = "PYTHONPATH=. python3 benchmarks/ptq_speed.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    lines += ["## Run", "", f"`{command}` ({(time.perf_counter() - start) / 60:.1f} min)", ""]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written: {results}")


if __name__ == "__main__":
    main()
