"""Does filter pruning handle every structure? 30 % uniform L1 pruning of real models, checked exactly.

Every model constructor of `paddle.vision.models` (the lowercase callables of its
`__all__`, `pretrained=False`, at the smallest input size each accepts), the hand-made
pattern models of the tests (tests/structure_models.py: segmentation- and detection-style
outputs, channels-last blocks, fixed-shape reshapes, channel shuffles, equal splits,
channel multipliers, ...) and two resnet18 backbone + head models. For each: `analyze`
(time of the one trace), `prune(ratios=0.3)`, then the checks of tests/prune_checks.py:
the pruned model computes what the unpruned model computes with the removed channels cut
off at their consumers (atol 1e-4; skipped for models whose channels pass a
LayerNorm/GroupNorm, whose statistics change with them), the outputs keep their shapes,
layer attributes match the new weight shapes, `count_flops` equals
`PruneResult.flops_after`, `paddle.jit.save`/`load` reproduces the outputs and one SGD step
runs. A row passes when FLOPs after are below 0.85x before, or, for a model with a size
written into its forward, when exactly the groups behind that size are kept whole.

    PYTHONPATH=. python3 benchmarks/prune_structures.py          # the run in benchmarks/results/prune_structures.md
    PYTHONPATH=. python3 benchmarks/prune_structures.py --smoke  # five small models, result page in /tmp
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
from slimkit.core.surgery import capture
from slimkit.core.cpu import cpu_description
from slimkit.pruning import analyze, dependency, layer_hooks, prune
from slimkit.pruning.alignment import default_alignment
from slimkit.pruning.dependency.walk import ChannelWalk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import attention_models as A  # noqa: E402
import structure_models as M  # noqa: E402
from prune_checks import _randomize_bn, check_attributes, check_exact, check_jit_roundtrip, check_train_step, run  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "prune_structures.md"
V = paddle.vision.models


class Case:
    """One model of the table: its structure, constructor and input shape.

    `exact=False` for models whose channels pass a LayerNorm/GroupNorm (their statistics
    change with the channels). `fixed`: the groups a size written into the forward keeps
    whole (the pass criterion for them: exactly these groups whole, with that reason).
    `hooks`: {layer class: removal hook} registered for the row (slimkit.pruning.layer_hooks).
    """

    def __init__(self, structure, build, shape, exact=True, fixed=(), hooks=None):
        self.structure, self.build, self.shape, self.exact, self.fixed = structure, build, shape, exact, set(fixed)
        self.hooks = dict(hooks or {})


# Sizes the constructors need (the smallest of 32, 64, 75, 96, 128, 224 they run on; inception_v3 needs 75).
_VISION_SHAPES = {"alexnet": [1, 3, 224, 224], "googlenet": [1, 3, 224, 224], "inception_v3": [1, 3, 75, 75]}
_FAMILIES = [("resnext", "grouped conv + residual"), ("wide_resnet", "residual (wide)"), ("resnet", "residual"),
             ("vgg", "chain + flatten"), ("alexnet", "chain + flatten"), ("mobilenet_v1", "depthwise"),
             ("mobilenet_v2", "depthwise + residual"), ("mobilenet_v3", "depthwise + SE"), ("densenet", "concat"),
             ("squeezenet", "concat"), ("shufflenet", "channel shuffle + half split"),
             ("googlenet", "concat + flatten, 3 outputs"), ("inception", "concat, reshape [-1, 2048]")]
# inception_v3's classifier input is `paddle.reshape(x, [-1, 2048])`: the 6 convs feeding it stay whole.
_VISION_FIXED = {"inception_v3": {f"inception_block_list.10.{b}.0" for b in (
    "branch1x1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool_conv")}}


def _vision_models():
    """Every model constructor paddle.vision.models exports (lowercase callables), and LeNet."""
    models = {"lenet": Case("chain + flatten (LeNet)", lambda: V.LeNet(num_classes=10), [1, 1, 28, 28])}
    for name in V.__all__:
        constructor = getattr(V, name)
        if name.islower() and callable(constructor):
            structure = next((s for prefix, s in _FAMILIES if name.startswith(prefix)), "paddle.vision")
            models[name] = Case(structure, lambda c=constructor: c(pretrained=False, num_classes=10),
                                _VISION_SHAPES.get(name, [1, 3, 32, 32]), fixed=_VISION_FIXED.get(name, ()))
    return models


MODELS = {
    **_vision_models(),
    "small_cnn": Case("conv -> flatten -> linear", lambda: slimkit.build_model("small_cnn", input_size=8),
                      [1, 1, 8, 8]),
    "resnet20": Case("residual", lambda: slimkit.build_model("resnet20"), [1, 3, 32, 32]),
    "small_unet": Case("slimkit's segmenter: skip concats, x2 upsampling", lambda: slimkit.build_model(
        "small_unet", num_classes=4, in_channels=3), [1, 3, 32, 32]),
    "resnet50 @224": Case("residual", lambda: V.resnet50(num_classes=10), [1, 3, 224, 224]),
    "encoder_decoder": Case("skip concats, upsampling to input size, [logits]", M.EncoderDecoder, [1, 3, 32, 32]),
    "encoder_decoder_aux": Case("... + aux head", lambda: M.EncoderDecoder(aux=True), [1, 3, 32, 32]),
    "detector": Case("backbone + FPN + 2 heads, dict", M.Detector, [1, 3, 32, 32]),
    "resnet18_seg": Case("resnet18 + upsampled head, [logits]", M.ResNetSeg, [1, 3, 64, 64]),
    "resnet18_fpn": Case("resnet18 + FPN + 2 heads, dict", M.ResNetFPN, [1, 3, 64, 64]),
    "convnext_tiny": Case("channels-last blocks (LayerNorm): hidden widths; the stream is an embedding width",
                          M.ConvNeXtTiny, [1, 3, 32, 32]),
    "token_block": Case("token flatten + Linear, GroupNorm", M.TokenBlock, [1, 3, 32, 32], exact=False),
    "mobile_ops": Case("max/min, PReLU, clip, pad, where, gates", M.MobileOps, [1, 3, 32, 32]),
    "interpolations": Case("interpolate with/without size, 1-D", lambda: M.Interpolations(True), [1, 3, 32, 32]),
    "channel_multiplier": Case("depthwise out = 3 * in", M.ChannelMultiplier, [1, 3, 32, 32]),
    "reduce_split_merge": Case("grouped reduce, branches, hierarchical add, concat (EESP)", M.ESPNetLike,
                               [1, 3, 32, 32]),
    "channel_shuffle": Case("two branches -> concat -> shuffle; one-layer shuffle", M.ShuffleUnits, [1, 3, 32, 32]),
    "channel_shuffle_fixed": Case("... with [n, 2, 12, h, w] written in the forward",
                                  lambda: M.ShuffleUnits(literal=True), [1, 3, 32, 32], fixed={"left"}),
    "equal_split": Case("paddle.chunk(x, 2, axis=1) to two layers", M.EqualSplit, [1, 3, 32, 32]),
    "equal_split_fixed": Case("split(x, [8, 8], axis=1) written in the forward", lambda: M.EqualSplit("literal"),
                              [1, 3, 32, 32], fixed={"stem.0"}),
    "fixed_reshape": Case("reshape(x, [-1, 64]) before fc", lambda: M.FixedWidthHead(False), [1, 3, 16, 16],
                          fixed={"last"}),
    "ghost_modules": Case("concat of a conv and its depthwise copy, sliced; shortcut conv (GhostNet)",
                          M.GhostNetLike, [1, 3, 32, 32]),
    "mixed_kernels": Case("split into sections kept as an attribute, mixed kernels (MixNet)", M.MixNetLike,
                          [1, 3, 32, 32]),
    "enet_blocks": Case("conv + pooled input concat, zero padding to a branch's width (ENet), [logits]",
                        M.ENetLike, [1, 3, 32, 32]),
    "vit": Case("ViT: qkv heads, class token, position embedding", A.ViT, [1, 3, 16, 16]),
    "deit": Case("DeiT: + distillation token and head, unbind", lambda: A.ViT(distilled=True, unbind=True),
                 [1, 3, 16, 16]),
    "vit_head_dim_from_width": Case("ViT as PaddleClas writes it (C // num_heads): heads kept whole",
                                    lambda: A.ViT(c_from_x=True), [1, 3, 16, 16],
                                    fixed={"blocks.0.attn.qkv", "blocks.1.attn.qkv", "patch_embed"}),
    "multi_head_attention": Case("paddle.nn.MultiHeadAttention block", A.MHABlock, [1, 3, 16, 16]),
    "swin": Case("Swin: window attention, relative position bias, shift (roll), patch merging", A.Swin,
                 [1, 3, 16, 16]),
    "pvt": Case("PVT: spatial-reduction attention, dwconv MLP", A.PVT, [1, 3, 16, 16]),
    "cvt": Case("CvT: conv projections of q, k, v", A.CvT, [1, 3, 16, 16]),
    "mobilevit": Case("MobileViT block: unfold into patches, transformer, fold", A.MobileViT, [1, 3, 16, 16]),
    "svtr_neck": Case("SVTR mixing blocks as in the PP-OCR recogniser's neck (with a removal hook)",
                      A.SVTRRecognizer, [1, 3, 32, 64], hooks={A.SVTRAttention: A.svtr_attention_hook}),
    "segformer": Case("SegFormer: MiT stages, Mix-FFN, all-MLP decoder, [logits]", A.SegFormer, [1, 3, 32, 32]),
}
SMOKE = ["lenet", "encoder_decoder", "convnext_tiny", "channel_shuffle", "equal_split_fixed", "vit", "swin"]


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
    case = MODELS[name]
    for layer_type, hook in case.hooks.items():
        layer_hooks.register_layer_hook(layer_type, hook)
    try:
        return _bench(name, case, ratio)
    finally:
        for layer_type in case.hooks:
            layer_hooks.unregister_layer_hook(layer_type)


def _bench(name, case, ratio):
    paddle.seed(0)
    row = {"model": name, "structure": case.structure, "input": "x".join(map(str, case.shape[1:])),
           "trace_s": float("nan"), "groups": "-", "prunable": "-", "skipped": "-", "reasons": []}
    try:
        model = case.build()
        _randomize_bn(model)
        x = paddle.to_tensor(np.random.RandomState(0).randn(*case.shape).astype("float32"))
        shapes_before = [o.shape for o in run(model, x)]
    except Exception as err:  # a model that does not even run as built: the row says so
        row["status"] = f"FAIL: cannot build or run: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
        return row
    try:
        start = time.perf_counter()
        graph = analyze(model, case.shape)
        row["trace_s"] = time.perf_counter() - start
    except Exception as err:
        row["status"] = f"FAIL: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
        return row
    row.update(groups=len(graph.groups), prunable=len(graph.prunable()), skipped=len(graph.skipped()))
    try:
        row["status"] = _prune_and_check(case, model, graph, ratio, x, shapes_before, row)
    except Exception as err:  # a benchmark row, not a crash: the table says what failed
        traceback.print_exc()
        row["status"] = f"FAIL: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
    # One line per kind of reason: layer names and shapes differ from block to block.
    row["reasons"] = sorted({re.sub(r"`[^`]+`", "`<layer>`", re.sub(r"\[[^\]]*\]", "[..]", part.strip()))
                             for reason in graph.skipped().values() for part in reason.split(";")})
    return row


def _prune_and_check(case, model, graph, ratio, x, shapes_before, row):
    """Prune, run the checks of tests/prune_checks.py (an AssertionError fails the row) and give the verdict."""
    original = capture(model)
    start = time.perf_counter()
    result = prune(model, case.shape, ratios=ratio, graph=graph)
    row["prune_s"] = time.perf_counter() - start
    row["flops"] = before, after = (result.flops_before, result.flops_after)
    outs = run(model, x)
    assert [o.shape for o in outs] == shapes_before, [o.shape for o in outs]
    assert slimkit.count_flops(model, case.shape)[0] == result.flops_after
    check_attributes(model)
    if case.exact:
        check_exact(case.build, original, graph, result.keep, x, outs)
    with tempfile.TemporaryDirectory() as tmp:
        check_jit_roundtrip(model, case.shape, x, outs, Path(tmp))
    check_train_step(model, case.shape, classes=shapes_before == [(case.shape[0], 10)])
    checks = "pass" if case.exact else "pass (not exact: norm statistics)"
    if case.fixed:
        fixed = {n for n, why in graph.skipped().items() if "written in the model's forward" in why}
        if fixed != case.fixed:
            return f"FAIL: kept whole for a fixed size: {sorted(fixed)}, expected {sorted(case.fixed)}"
        return f"{checks}; exactly the {len(fixed)} group(s) behind the fixed size kept whole"
    return checks if after < 0.85 * before else f"FAIL: FLOPs {after / before:.2f}x (>= 0.85x); checks {checks}"


def trace_breakdown(shape, repeats=3):
    """Best-of-`repeats` seconds of each step of `analyze` on resnet50 (what one analysis costs)."""
    model = V.resnet50(num_classes=10)
    times = {"eager forward check": [], "to_static trace": [], "channel walk": [], "analyze total": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        dependency.check_forward_runs(model, shape)
        t1 = time.perf_counter()
        program, outputs = dependency.trace_program(model, shape)
        t2 = time.perf_counter()
        tracer = ChannelWalk(model)
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
             f"Machine: {cpu_description()}, Python {platform.python_version()}, paddle {paddle.__version__}, "
             f"shared CPU (times are indicative); default channel multiple {default_alignment()} on this CPU "
             "(pruning.alignment).", "",
             "`trace` is one `analyze` (the PIR trace and channel walk), `prune` is scoring + removal + the forward "
             "check + two paddle.flops counts. pass = same output shapes, exact outputs vs. the masked unpruned "
             "model, attributes, FLOPs, jit.save/load, one SGD step, and FLOPs after below 0.85x before (`< 0.85x`) "
             "or, for a model with a size written into its forward, exactly the groups behind it kept whole.", "",
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
