"""Does filter pruning handle every structure? 30 % uniform L1 pruning of real models, checked exactly.

For each model: `analyze` (time of the one trace), `prune(ratios=0.3)`, then the checks of
tests/prune_checks.py: the pruned model computes what the unpruned model computes with the
removed channels cut off at their consumers (atol 1e-4), layer attributes match the new
weight shapes, `count_flops` equals `PruneResult.flops_after`, `paddle.jit.save`/`load`
reproduces the outputs and one SGD step runs. The tests use small stand-ins for the big
models (vgg11_bn, densenet121, googlenet, resnext50); this runs the real ones.

    PYTHONPATH=. python3 benchmarks/prune_structures.py     # the run in benchmarks/results/prune_structures.md
"""

import argparse
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import paddle

import slimkit
from slimkit.pruning import analyze, dependency, prune
from slimkit.surgery import capture

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from prune_checks import _randomize_bn, check_attributes, check_exact, check_jit_roundtrip, check_train_step, run  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "prune_structures.md"
V = paddle.vision.models
MODELS = {
    # name: (structure, constructor, input shape)
    "vgg11_bn": ("chain", lambda: V.vgg11(batch_norm=True, num_classes=10), [1, 3, 32, 32]),
    "small_cnn": ("conv -> flatten -> linear", lambda: slimkit.build_model("small_cnn", input_size=8), [1, 1, 8, 8]),
    "resnet20": ("residual", lambda: slimkit.build_model("resnet20"), [1, 3, 32, 32]),
    "resnet18": ("residual", lambda: V.resnet18(num_classes=10), [1, 3, 32, 32]),
    "resnet50": ("residual", lambda: V.resnet50(num_classes=10), [1, 3, 32, 32]),
    "resnet50 @224": ("residual", lambda: V.resnet50(num_classes=10), [1, 3, 224, 224]),
    "mobilenet_v1 (0.5)": ("depthwise", lambda: slimkit.build_model("mobilenet_v1", scale=0.5), [1, 3, 32, 32]),
    "mobilenet_v2": ("depthwise + residual", lambda: V.mobilenet_v2(num_classes=10), [1, 3, 32, 32]),
    "mobilenet_v3_small": ("depthwise + SE", lambda: V.mobilenet_v3_small(num_classes=10), [1, 3, 32, 32]),
    "densenet121": ("concat", lambda: V.densenet121(num_classes=10), [1, 3, 32, 32]),
    "squeezenet1_0": ("concat", lambda: V.squeezenet1_0(num_classes=10), [1, 3, 64, 64]),
    "shufflenet_v2_x0_25": ("concat + channel shuffle", lambda: V.shufflenet_v2_x0_25(num_classes=10), [1, 3, 32, 32]),
    "googlenet": ("concat + flatten, 3 outputs", lambda: V.googlenet(num_classes=10), [1, 3, 224, 224]),
    "resnext50_32x4d": ("grouped conv", lambda: V.resnext50_32x4d(num_classes=10), [1, 3, 32, 32]),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def bench(name, ratio):
    structure, build, shape = MODELS[name]
    paddle.seed(0)
    model = build()
    _randomize_bn(model)
    start = time.perf_counter()
    graph = analyze(model, shape)
    trace_s = time.perf_counter() - start
    row = {"model": name, "structure": structure, "input": "x".join(map(str, shape[1:])), "trace_s": trace_s,
           "groups": len(graph.groups), "prunable": len(graph.prunable()), "skipped": len(graph.skipped())}
    original = capture(model)
    x = paddle.to_tensor(np.random.RandomState(0).randn(*shape).astype("float32"))
    try:
        start = time.perf_counter()
        result = prune(model, shape, ratios=ratio, graph=graph)
        row["prune_s"] = time.perf_counter() - start
        row["flops"] = (result.flops_before, result.flops_after)
        outs = run(model, x)
        assert all(o.shape == (shape[0], 10) for o in outs), [o.shape for o in outs]
        assert slimkit.count_flops(model, shape)[0] == result.flops_after
        check_attributes(model)
        check_exact(build, original, graph, result.keep, x, outs)
        with tempfile.TemporaryDirectory() as tmp:
            check_jit_roundtrip(model, shape, x, outs, Path(tmp))
        check_train_step(model, shape)
        row["status"] = "pass"
    except Exception as err:  # a benchmark row, not a crash: the table says what failed
        traceback.print_exc()
        row["status"] = f"FAIL: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
    # One line per kind of reason: layer names and shapes differ from block to block.
    row["reasons"] = sorted({re.sub(r"`[^`]+`", "`<layer>`", re.sub(r"\[[^\]]*\]", "[..]", part.strip()))
                             for reason in graph.skipped().values() for part in reason.split(";")})
    return row


def trace_breakdown(shape, repeats=3):
    """Best-of-`repeats` seconds of each step of `analyze` on resnet50 (what one analysis costs)."""
    model = V.resnet50(num_classes=10)
    times = {"eager forward check": [], "to_static trace": [], "channel walk": [], "analyze total": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        dependency._check_forward_runs(model, shape)
        t1 = time.perf_counter()
        program, outputs = dependency._trace(model, shape)
        t2 = time.perf_counter()
        tracer = dependency._ChannelTracer(model)
        tracer.run(program, outputs)
        tracer.graph(shape, [list(v.shape) for v in outputs])
        t3 = time.perf_counter()
        analyze(model, shape)
        t4 = time.perf_counter()
        for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key].append(seconds)
    return {key: min(v) for key, v in times.items()}


def table(rows, ratio, argv, breakdown):
    lines = [f"# Filter pruning across structures ({int(ratio * 100)} % of every prunable group, L1)", "",
             f"Command: `PYTHONPATH=. python3 benchmarks/prune_structures.py{' ' + ' '.join(argv) if argv else ''}`  ",
             f"Machine: {platform.machine()}, {platform.python_version()}, paddle {paddle.__version__}, "
             "shared 2-core CPU (times are indicative).", "",
             "`trace` is one `analyze` (the PIR trace and channel walk), `prune` is scoring + removal + the forward "
             "check + two paddle.flops counts. pass = exact outputs vs. the masked unpruned model, attributes, "
             "FLOPs, jit.save/load, one SGD step.", "",
             "| model | structure | input | trace s | prune s | groups | prunable | skipped | FLOPs before | "
             "FLOPs after | ratio | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        before, after = r.get("flops", (0, 0))
        lines.append(f"| {r['model']} | {r['structure']} | {r['input']} | {r['trace_s']:.2f} | "
                     f"{r.get('prune_s', float('nan')):.1f} | {r['groups']} | {r['prunable']} | {r['skipped']} | "
                     f"{before / 1e6:.1f} M | {after / 1e6:.1f} M | {after / before if before else 0:.2f} | "
                     f"{r['status']} |")
    lines += ["", "One `analyze` of resnet50, best of 3 (seconds):", "",
              "| input | " + " | ".join(next(iter(breakdown.values()))) + " |",
              "|---|" + "---|" * len(next(iter(breakdown.values())))]
    for shape, times in breakdown.items():
        lines.append(f"| {shape} | " + " | ".join(f"{t:.3f}" for t in times.values()) + " |")
    lines += ["", "Why groups were skipped (distinct reasons per model):", ""]
    for r in rows:
        lines.append(f"- {r['model']}: " + "; ".join(r["reasons"]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    rows = []
    for name in args.models:
        rows.append(bench(name, args.ratio))
        r = rows[-1]
        print(f"{name}: trace {r['trace_s']:.2f}s groups {r['groups']} prunable {r['prunable']} {r['status']}",
              flush=True)
    breakdown = {"x".join(map(str, shape[1:])): trace_breakdown(shape) for shape in ([1, 3, 32, 32], [1, 3, 224, 224])}
    text = table(rows, args.ratio, argv, breakdown)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
