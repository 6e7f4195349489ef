"""Where distillation starts: the real PP-OCR recognisers pruned to about 0.6x FLOPs, before any training.

Each recogniser (benchmarks/ppocr.py fetches it) is imported with `slimkit.from_inference` and
pruned by `slimkit.prune` with one channel ratio for every prunable group (24 %, channel counts
rounded to the CPU's block as by default: about 0.6x FLOPs), once by `l1` without compensation (what the
filter_pruning stage did before `compensate`) and once by `variance` with the removed channels'
means folded into the readers' biases (the stage's default now), measured on 128 unlabelled
rendered lines. Score: the share of held-out lines whose greedy CTC reading equals the original
model's, and the KL divergence of the per-step character distributions. No timing.

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr_prune_start.py --write
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppocr  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ppocr_prune_start.md"
SHAPE = [1, 3, ppocr.HEIGHT, ppocr.WIDTH]
RATIO = 0.24  # of every group's channels: about 0.6x FLOPs, as ppocr_compress.py's uniform 0.4 FLOPs target
VARIANTS = {"l1, not compensated": ("l1", False), "variance, compensated": ("variance", True)}


def score(model, teacher_out, held, chars):
    import paddle

    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(held)).numpy()
    kl = float((teacher_out * (np.log(teacher_out + 1e-8) - np.log(out + 1e-8))).sum(-1).mean())
    same = [ppocr.ctc_decode(a, chars) == ppocr.ctc_decode(b, chars) for a, b in zip(out, teacher_out)]
    return float(np.mean(same)), kl


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    import paddle

    import slimkit
    from slimkit.core.cpu import cpu_description

    rows = []
    for name, folder in ((n, f) for n, f in ppocr.fetch().items() if n in ppocr.RECOGNISERS):
        teacher = slimkit.from_inference(folder)
        teacher.eval()
        _, images, chars = ppocr.lines_for(folder, args.lines, seed=0)
        held = np.concatenate(list(ppocr.batches(images, 64)))
        with paddle.no_grad():
            teacher_out = teacher(paddle.to_tensor(held)).numpy()
        _, train, _ = ppocr.lines_for(folder, 128, seed=1)  # other lines; their strings unused
        batches = [paddle.to_tensor(b) for b in ppocr.batches(train, 16)]
        for label, (criterion, compensate) in VARIANTS.items():
            student = slimkit.from_inference(folder)
            result = slimkit.prune(student, SHAPE, ratios=RATIO, criterion=criterion, compensate=compensate,
                                   batches=batches)
            agreement, kl = score(student, teacher_out, held, chars)
            rows.append((name, label, result.flops_ratio, agreement, kl))
            print(f"{name} {label}: FLOPs {result.flops_ratio:.2f}x, agreement {agreement:.1%}, KL {kl:.3f}",
                  flush=True)
    page = ["# PP-OCR recognisers pruned to about 0.6x FLOPs, before any training", "",
            "    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr_prune_start.py --write", "",
            f"Every prunable group loses {RATIO:.1%} of its channels (`slimkit.prune`); agreement: the share of "
            f"{args.lines} held-out rendered lines read as the original reads them (greedy CTC); KL: of the "
            "per-step character distributions, original to pruned. Statistics: 128 other lines, unlabelled.",
            "", f"CPU: {cpu_description()} (no timing here).", "",
            "| model | criterion | FLOPs | agreement | KL |", "|---|---|---|---|---|"]
    page += [f"| {n} | {label} | {flops:.2f}x | {agreement:.1%} | {kl:.3f} |" for n, label, flops, agreement, kl
             in rows]
    text = "\n".join(page) + "\n"
    print(text)
    if args.write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
