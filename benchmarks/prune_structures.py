"""Does filter pruning handle every structure? 30 % uniform L1 pruning of real models, checked exactly.

Every constructor of `paddle.vision.models` (at an input size it accepts), the hand-made
models of the tests (segmentation- and detection-style outputs, channels-last blocks,
fixed-shape reshapes, channel multipliers, ...) and two backbone + head models. For each:
`analyze` (time of the one trace), `prune(ratios=0.3)`, then the checks of
tests/prune_checks.py: the pruned model computes what the unpruned model computes with the
removed channels cut off at their consumers (atol 1e-4; skipped for models whose channels
pass a LayerNorm/GroupNorm, whose statistics change with them), the outputs keep their
shapes, layer attributes match the new weight shapes, `count_flops` equals
`PruneResult.flops_after`, `paddle.jit.save`/`load` reproduces the outputs and one SGD step runs.

    PYTHONPATH=. python3 benchmarks/prune_structures.py          # the run in benchmarks/results/prune_structures.md
    PYTHONPATH=. python3 benchmarks/prune_structures.py --smoke  # four small models, result page in /tmp
"""

import argparse
import inspect
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import slimkit
from slimkit.pruning import analyze, dependency, prune
from slimkit.surgery import capture

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from prune_checks import (_randomize_bn, check_attributes, check_exact, check_jit_roundtrip,  # noqa: E402
                          check_train_step, run)
from test_prune_channel_ops import ChannelMultiplier, Interpolations, MobileOps  # noqa: E402
from test_prune_channels_last import ConvNeXtTiny, TokenBlock  # noqa: E402
from test_prune_fixed_reshape import FixedWidthHead  # noqa: E402
from test_prune_outputs import Detector, EncoderDecoder  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "prune_structures.md"
V = paddle.vision.models


class ResNetSeg(nn.Layer):
    """Segmentation-style: resnet18 features, a 1x1 classifier, upsampled to the input's size, `[logits]`."""

    def __init__(self, classes=4):
        super().__init__()
        self.backbone = V.resnet18(num_classes=-1, with_pool=False)
        self.head = nn.Sequential(nn.Conv2D(512, 64, 3, padding=1), nn.BatchNorm2D(64), nn.ReLU(),
                                  nn.Conv2D(64, classes, 1))

    def forward(self, x):
        return [F.interpolate(self.head(self.backbone(x)), size=paddle.shape(x)[2:], mode="bilinear")]


class ResNetFPN(nn.Layer):
    """Detection-style: resnet18 stages 2-4, an FPN neck (lateral + top-down add), class and box heads, a dict."""

    def __init__(self, classes=3, width=64):
        super().__init__()
        self.body = V.resnet18(num_classes=-1, with_pool=False)
        self.lateral = nn.LayerList([nn.Conv2D(c, width, 1) for c in (128, 256, 512)])
        self.smooth = nn.Conv2D(width, width, 3, padding=1)
        self.cls, self.box = nn.Conv2D(width, classes, 3, padding=1), nn.Conv2D(width, 4, 3, padding=1)

    def forward(self, x):
        b = self.body
        c2 = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
        c3 = b.layer2(c2)
        c4 = b.layer3(c3)
        c5 = b.layer4(c4)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[2:], mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[2:], mode="nearest")
        levels = [F.relu(self.smooth(p)) for p in (p3, p4, p5)]
        return {"boxes": [self.box(p) for p in levels], "scores": [self.cls(p) for p in levels]}


# Sizes the constructors need: fixed-size classifiers (alexnet, googlenet, inception_v3), LeNet's 1x28x28.
_VISION_SHAPES = {"alexnet": [1, 3, 224, 224], "googlenet": [1, 3, 224, 224], "inception_v3": [1, 3, 299, 299],
                  "squeezenet1_0": [1, 3, 64, 64], "squeezenet1_1": [1, 3, 64, 64]}


def _vision_models():
    models = {"lenet": ("paddle.vision LeNet", lambda: V.LeNet(num_classes=10), [1, 1, 28, 28], True)}
    for name in V.__all__:
        constructor = getattr(V, name)
        if inspect.isfunction(constructor):
            models[name] = ("paddle.vision", lambda c=constructor: c(num_classes=10),
                            _VISION_SHAPES.get(name, [1, 3, 64, 64]), True)
    return models


MODELS = {
    # name: (structure, constructor, input shape, outputs exact vs. the masked model)
    **_vision_models(),
    "small_cnn": ("conv -> flatten -> linear", lambda: slimkit.build_model("small_cnn", input_size=8), [1, 1, 8, 8],
                  True),
    "resnet20": ("residual", lambda: slimkit.build_model("resnet20"), [1, 3, 32, 32], True),
    "resnet50 @224": ("residual", lambda: V.resnet50(num_classes=10), [1, 3, 224, 224], True),
    "encoder_decoder": ("skip concats, upsampling to input size, [logits]", EncoderDecoder, [1, 3, 32, 32], True),
    "encoder_decoder_aux": ("... + aux head", lambda: EncoderDecoder(aux=True), [1, 3, 32, 32], True),
    "detector": ("backbone + FPN + 2 heads, dict", Detector, [1, 3, 32, 32], True),
    "resnet18_seg": ("resnet18 + upsampled head, [logits]", ResNetSeg, [1, 3, 64, 64], True),
    "resnet18_fpn": ("resnet18 + FPN + 2 heads, dict", ResNetFPN, [1, 3, 64, 64], True),
    "convnext_tiny": ("channels-last blocks (LayerNorm)", ConvNeXtTiny, [1, 3, 32, 32], False),
    "token_block": ("token flatten + Linear, GroupNorm", TokenBlock, [1, 3, 32, 32], False),
    "mobile_ops": ("max/min, PReLU, clip, pad, where, gates", MobileOps, [1, 3, 32, 32], True),
    "interpolations": ("interpolate with/without size, 1-D", lambda: Interpolations(True), [1, 3, 32, 32], True),
    "channel_multiplier": ("depthwise out = 3 * in", ChannelMultiplier, [1, 3, 32, 32], True),
    "fixed_reshape": ("reshape(x, [-1, 64]) before fc", lambda: FixedWidthHead(False), [1, 3, 16, 16], True),
}
SMOKE = ["lenet", "encoder_decoder", "convnext_tiny", "fixed_reshape"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--smoke", action="store_true", help=f"only {', '.join(SMOKE)}, no timing breakdown, "
                                                        "result page in the temp folder")
    args = p.parse_args(argv)
    if args.smoke:
        args.models = SMOKE
        args.out = str(Path(tempfile.gettempdir()) / "prune_structures.smoke.md") if args.out == str(RESULTS) \
            else args.out
    return args


def bench(name, ratio):
    structure, build, shape, exact = MODELS[name]
    paddle.seed(0)
    model = build()
    _randomize_bn(model)
    x = paddle.to_tensor(np.random.RandomState(0).randn(*shape).astype("float32"))
    shapes_before = [o.shape for o in run(model, x)]
    row = {"model": name, "structure": structure, "input": "x".join(map(str, shape[1:])), "trace_s": float("nan"),
           "groups": "-", "prunable": "-", "skipped": "-", "reasons": []}
    try:
        start = time.perf_counter()
        graph = analyze(model, shape)
        row["trace_s"] = time.perf_counter() - start
    except Exception as err:
        row["status"] = f"FAIL: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
        return row
    row.update(groups=len(graph.groups), prunable=len(graph.prunable()), skipped=len(graph.skipped()))
    original = capture(model)
    try:
        start = time.perf_counter()
        result = prune(model, shape, ratios=ratio, graph=graph)
        row["prune_s"] = time.perf_counter() - start
        row["flops"] = (result.flops_before, result.flops_after)
        outs = run(model, x)
        assert [o.shape for o in outs] == shapes_before, [o.shape for o in outs]
        assert slimkit.count_flops(model, shape)[0] == result.flops_after
        check_attributes(model)
        if exact:
            check_exact(build, original, graph, result.keep, x, outs)
        with tempfile.TemporaryDirectory() as tmp:
            check_jit_roundtrip(model, shape, x, outs, Path(tmp))
        check_train_step(model, shape, classes=shapes_before == [(shape[0], 10)])
        row["status"] = "pass" if exact else "pass (not exact: norm statistics)"
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
        tracer.run(program, dependency.flat_outputs(outputs))
        tracer.graph(shape, [list(v.shape) for v in dependency.flat_outputs(outputs)])
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
             "check + two paddle.flops counts. pass = same output shapes, exact outputs vs. the masked unpruned "
             "model, attributes, FLOPs, jit.save/load, one SGD step. `< 0.85x`: FLOPs after below 0.85x before.", "",
             "| model | structure | input | trace s | prune s | groups | prunable | skipped | FLOPs before | "
             "FLOPs after | ratio | < 0.85x | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        before, after = r.get("flops", (0, 0))
        lines.append(f"| {r['model']} | {r['structure']} | {r['input']} | {r['trace_s']:.2f} | "
                     f"{r.get('prune_s', float('nan')):.1f} | {r['groups']} | {r['prunable']} | {r['skipped']} | "
                     f"{before / 1e6:.1f} M | {after / 1e6:.1f} M | {after / before if before else 0:.2f} | "
                     f"{'yes' if before and after < 0.85 * before else 'no'} | {r['status']} |")
    if breakdown:
        columns = next(iter(breakdown.values()))
        lines += ["", "One `analyze` of resnet50, best of 3 (seconds):", "",
                  "| input | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
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
    shapes = [] if args.smoke else ([1, 3, 32, 32], [1, 3, 224, 224])
    breakdown = {"x".join(map(str, shape[1:])): trace_breakdown(shape) for shape in shapes}
    text = table(rows, args.ratio, argv, breakdown)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
