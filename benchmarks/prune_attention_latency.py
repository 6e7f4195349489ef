"""Do removed heads and MLP width make a DeiT-tiny-sized model faster in Paddle Inference, as much as FLOPs say?

A DeiT-tiny-sized ViT (tests/attention_models.ViT: embedding 192, 12 blocks of 3 heads of 64,
MLP 768, 16x16 patches of a 224x224 image, class and distillation tokens; random weights, since
latency does not depend on them) is pruned by the filter_pruning stage to 0.5x FLOPs
(target_flops_reduction 0.5, uniform selection, L1):

- `heads+mlp`: the default units, whole heads and MLP hidden widths;
- `heads+mlp+embed`: the embedding width of the residual stream as well (prune_embed).

The unpruned and pruned models are exported for Paddle Inference with `paddle.jit.save` under
PIR (`model.json`: Paddle 3.3 traces GELU and attention's matmuls under PIR only, so the legacy
`.pdmodel` export cannot hold them), loaded with oneDNN, 1 thread, batch 1, and timed
interleaved in one go (slimkit.report.timing.time_runners: warm-up, rounds, medians
with p10/p90). The page gives each variant's latency ratio against its FLOPs ratio, with the
CPU's ISA flags. FLOPs are paddle.flops' (linear and conv layers); the attention matmuls
q @ k^T and attn @ v are not in them, so the page also gives the FLOPs with those added
(2 * heads * N^2 * head_dim multiply-accumulates per block), which the latency follows more closely.

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/prune_attention_latency.py          # minutes, quiet machine
    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/prune_attention_latency.py --smoke  # seconds: a small ViT
"""

import argparse
import sys
import tempfile
from pathlib import Path

import paddle

import slimkit
from slimkit import FilterPruning
from slimkit.core.cpu import cpu_description
from slimkit.deploy import InferenceModel, time_runners
from slimkit.deploy.paddle_inference import input_spec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from attention_models import ViT  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "prune_attention_latency.md"
FULL = {"dim": 192, "depth": 12, "heads": 3, "patch": 16, "img": 224, "runs": 60, "warmup": 10, "rounds": 6}
SMOKE = {"dim": 48, "depth": 2, "heads": 3, "patch": 8, "img": 32, "runs": 6, "warmup": 1, "rounds": 2}
VARIANTS = {"heads+mlp": {}, "heads+mlp+embed": {"prune_embed": True}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="a small ViT and tiny runs, to check the script works")
    p.add_argument("--results", default=None, help=f"result page (default {RESULTS}; with --smoke a temp file)")
    p.add_argument("--target", type=float, default=0.5, help="FLOPs reduction asked of filter_pruning")
    return p.parse_args(argv)


def build(settings):
    paddle.seed(0)
    model = ViT(dim=settings["dim"], depth=settings["depth"], heads=settings["heads"], patch=settings["patch"],
                img=settings["img"], distilled=True)
    model.eval()
    return model


def attention_macs(model, settings):
    """Multiply-accumulates of q @ k^T and attn @ v, which paddle.flops does not count."""
    tokens = (settings["img"] // settings["patch"]) ** 2 + 2
    return sum(2 * block.attn.num_heads * tokens ** 2 * block.attn.head_dim for block in model.blocks)


def pruned(settings, shape, target, options, tmp):
    model = build(settings)
    stage = FilterPruning(target_flops_reduction=target, selection="uniform", **options)
    ctx = slimkit.Context(data=None, engine=None, input_shape=shape, out_dir=Path(tmp))
    return stage.apply(model, ctx), ctx.metrics


def measure(settings, target, tmp):
    shape = [1, 3, settings["img"], settings["img"]]
    models, metrics = {"unpruned": build(settings)}, {}
    for name, options in VARIANTS.items():
        models[name], metrics[name] = pruned(settings, shape, target, options, tmp)
    runners = {}
    for name, model in models.items():
        prefix = str(Path(tmp) / name / "model")
        paddle.jit.save(model, prefix, input_spec=input_spec(shape))  # model.json + model.pdiparams
        runners[name] = InferenceModel(prefix, "onednn_int8", 1).runner(shape)
    timings = time_runners(runners, settings["warmup"], settings["runs"], settings["rounds"])
    flops = {name: slimkit.count_flops(model, shape)[0] for name, model in models.items()}
    attention = {name: attention_macs(model, settings) for name, model in models.items()}
    return models, metrics, timings, flops, attention


def page(settings, target, argv, models, metrics, timings, flops, attention):
    base_t, base_f, base_a = timings["unpruned"].median, flops["unpruned"], flops["unpruned"] + attention["unpruned"]
    lines = [f"# Attention pruning in Paddle Inference: a DeiT-tiny-sized ViT at {target:.0%} fewer FLOPs", "",
             f"Command: `PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/prune_attention_latency.py"
             f"{' ' + ' '.join(argv) if argv else ''}`  ",
             f"CPU: {cpu_description()}; paddle {paddle.__version__}; oneDNN, 1 thread, batch 1; "
             f"{settings['runs']} timed runs in {settings['rounds']} interleaved rounds.", "",
             f"Model: embedding {settings['dim']}, {settings['depth']} blocks of {settings['heads']} heads, "
             f"{settings['img']}x{settings['img']} input, {settings['patch']}x{settings['patch']} patches.", "",
             "| variant | heads per block | MLP width (block 0) | embedding | FLOPs (paddle.flops) | FLOPs ratio | "
             "ratio with attention matmuls | latency median ms (p10-p90) | latency ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, model in models.items():
        t = timings[name]
        heads = "/".join(str(b.attn.num_heads) for b in model.blocks)
        lines.append(f"| {name} | {heads} | {model.blocks[0].mlp.fc1.weight.shape[1]} | "
                     f"{model.patch_embed.weight.shape[0]} | {flops[name] / 1e6:.1f} M | {flops[name] / base_f:.2f} | "
                     f"{(flops[name] + attention[name]) / base_a:.2f} | {t.median:.2f} ({t.p10:.2f}-{t.p90:.2f}) | "
                     f"{t.median / base_t:.2f} |")
    lines += ["", "Selections (filter_pruning's ratios per group):", ""]
    lines += [f"- {name}: {metrics[name]['ratios']}" for name in metrics]
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    out = Path(args.results) if args.results else (
        Path(tempfile.gettempdir()) / "prune_attention_latency.smoke.md" if args.smoke else RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        text = page(settings, args.target, argv, *measure(settings, args.target, tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
