"""The attention, token and long-tail CNN backbones of a public model zoo (PaddleClas), through the structures checks.

Nothing of the zoo is part of slimkit: point `--zoo` at a PaddleClas checkout (its `ppcls`
package is imported from there; `pip download paddleclas` or a git clone both have it). Each
backbone is built with `class_num=10` and random weights, pruned with `slimkit.prune(ratios=0.3)`
at the default units (whole heads, MLP widths; no embedding widths) and checked as in
benchmarks/prune_structures.py (exact vs the masked model, attributes, FLOPs, jit.save/load, one
SGD step). Writes benchmarks/results/prune_zoo.md.

    PYTHONPATH=. python3 benchmarks/prune_zoo.py --zoo /path/to/PaddleClas
    PYTHONPATH=. python3 benchmarks/prune_zoo.py --zoo /path/to/PaddleClas --models ViT_small GhostNet_x1_0
"""

import argparse
import importlib
import sys
from pathlib import Path

import paddle

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prune_structures as structures  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "prune_zoo.md"
S224, S256 = [1, 3, 224, 224], [1, 3, 256, 256]
# name: (module under ppcls/arch/backbone, constructor, input shape, structure)
ZOO = {
    "ViT_small": ("model_zoo.vision_transformer", "ViT_small_patch16_224", S224, "ViT (head_dim = C // num_heads)"),
    "DeiT_tiny_distilled": ("model_zoo.distilled_vision_transformer", "DeiT_tiny_distilled_patch16_224", S224,
                            "DeiT, distillation token"),
    "Swin_tiny": ("legendary_models.swin_transformer", "SwinTransformer_tiny_patch4_window7_224", S224,
                  "window attention, shifts, patch merging"),
    "PVT_V2_B0": ("model_zoo.pvt_v2", "PVT_V2_B0", S224, "spatial-reduction attention, dwconv MLP"),
    "CvT_13": ("model_zoo.cvt", "CvT_13_224", S224, "conv projections"),
    "Twins_pcpvt_small": ("model_zoo.twins", "pcpvt_small", S224, "conditional position encoding"),
    "TNT_small": ("model_zoo.tnt", "TNT_small", S224, "transformer in transformer"),
    "CSWin_tiny": ("model_zoo.cswin_transformer", "CSWinTransformer_tiny_224", S224, "cross-shaped windows"),
    "LeViT_128S": ("model_zoo.levit", "LeViT_128S", S224, "attention biases, heads-major qkv"),
    "SVTR_tiny": ("model_zoo.svtrnet", "SVTR_tiny", [1, 3, 48, 320], "SVTR (PP-OCR's mixing blocks)"),
    "UniFormer_small": ("model_zoo.uniformer", "UniFormer_small", S224, "conv and attention blocks"),
    "MobileViT_XXS": ("model_zoo.mobilevit", "MobileViT_XXS", S256, "unfold into patches"),
    "MobileViTV2_x0_5": ("model_zoo.mobilevit_v2", "MobileViTV2_x0_5", S256, "separable linear attention"),
    "NextViT_small": ("model_zoo.nextvit", "NextViT_small_224", S224, "conv and attention blocks"),
    "VAN_B0": ("model_zoo.van", "VAN_B0", S224, "large-kernel attention (convs)"),
    "MobileNetV4_hybrid_medium": ("legendary_models.mobilenet_v4", "MobileNetV4_hybrid_medium", S224,
                                  "conv + attention hybrid"),
    "GhostNet_x1_0": ("model_zoo.ghostnet", "GhostNet_x1_0", S224, "ghost modules"),
    "MixNet_S": ("model_zoo.mixnet", "MixNet_S", S224, "mixed kernel sections"),
    "MicroNet_M0": ("model_zoo.micronet", "MicroNet_M0", S224, "dynamic shift, double shuffles"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoo", required=True, help="a PaddleClas checkout (the folder holding `ppcls`)")
    p.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def zoo_cases(path):
    sys.path.insert(0, str(Path(path).resolve()))
    importlib.import_module("ppcls.utils.logger").init_logger()  # some backbones log while they are built

    def build(module, constructor):
        def make():
            # Some backbones name their parameters (GhostNet: ParamAttr(name="conv1_weights")), which dygraph
            # refuses twice in one name scope; the harness builds every model more than once.
            with paddle.utils.unique_name.guard():
                return getattr(importlib.import_module(f"ppcls.arch.backbone.{module}"), constructor)(class_num=10)

        return make

    return {name: structures.Case(f"PaddleClas {constructor}: {structure}", build(module, constructor), shape)
            for name, (module, constructor, shape, structure) in ZOO.items()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    structures.MODELS.update(zoo_cases(args.zoo))
    rows = []
    for name in args.models:
        rows.append(structures.bench(name, args.ratio))
        r = rows[-1]
        print(f"{name}: trace {r['trace_s']:.2f}s groups {r['groups']} prunable {r['prunable']} {r['status']}",
              flush=True)
    text = structures.table(rows, args.ratio, argv, {}).replace(
        "benchmarks/prune_structures.py", "benchmarks/prune_zoo.py", 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
