"""Assemble docs/benchmarks.md from the result pages the benchmark scripts wrote.

    python3 benchmarks/collect.py > docs/benchmarks.md

Each page in benchmarks/results/ names the command that produced it; this only puts them
in one document, headings shifted one level down.
"""

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ["prune_structures", "prune_zoo", "prune_attention_latency", "sensitivity_vs_paddleslim", "filter_pruning",
         "sparse_pruning", "distillation", "quantization", "timing_noise", "deploy_latency",
         "deploy_latency_drift", "deploy_latency_avx2", "ptq_speed", "ptq_speed_avx2", "onnx_runtime", "distributed",
         "ppocr_recognisers", "ppocr_prune_start", "ppocr_compress", "ppocr_op_time"]

INTRO = """# Benchmarks

Measured on a shared 2-core x86_64 CPU with 24 GiB, PaddlePaddle 3.3.1 (CPU), PaddleSlim 2.6.0.
Every number below was produced by the command given with it (run from the repository root;
the scripts live in `benchmarks/` and take minutes to tens of minutes, which is why they are
not part of the test suite). Times on a shared machine are indicative; accuracies are on the
full held-out test split unless a section says otherwise. Regenerate this page with
`python3 benchmarks/collect.py > docs/benchmarks.md` after re-running a script.
"""


def main():
    pages = {p.stem: p for p in RESULTS.glob("*.md")}
    names = [n for n in ORDER if n in pages] + sorted(set(pages) - set(ORDER))
    parts = [INTRO]
    for name in names:
        text = pages[name].read_text().strip()
        parts.append(re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M))
    print("\n\n".join(parts))


if __name__ == "__main__":
    main()
