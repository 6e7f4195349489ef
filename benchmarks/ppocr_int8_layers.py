"""Which layers of a PP-OCR recogniser lose lines in Paddle 3.3's oneDNN int8 predictor?

The recogniser (benchmarks/ppocr.py fetches it) is quantized by slimkit's PTQ (hist
calibration on 96 rendered lines) with the CTC head kept float, and with one kind of
convolution (depthwise, 1x1, kxk) or a single layer kept float as well; each int8 export is
scored by exact match on 32 held-out lines in Paddle Inference with oneDNN and without it
(the same files). Prints one line per variant; no timing.

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr_int8_layers.py [PP-OCRv5_mobile_rec]
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppocr  # noqa: E402

SHAPE = [1, 3, 48, 320]


def main(name="PP-OCRv5_mobile_rec"):
    import slimkit
    from slimkit.deploy import InferenceModel
    from slimkit.quant import calibrate, convert, export_quantized, prepare_ptq

    folder = ppocr.fetch()[name]
    model = slimkit.from_inference(folder)
    texts, images, chars = ppocr.lines_for(folder, 32, seed=0)
    _, calibration, _ = ppocr.lines_for(folder, 96, seed=1)
    calibration = list(ppocr.batches(calibration, 16))
    convs = [(n, layer) for n, layer in model.named_sublayers() if type(layer).__name__ == "Conv2D"]
    linears = [n for n, layer in model.named_sublayers() if type(layer).__name__ == "Linear"]
    kinds = {"depthwise": [n for n, c in convs if c._groups > 1],
             "1x1": [n for n, c in convs if c._groups == 1 and list(c._kernel_size) == [1, 1]],
             "kxk": [n for n, c in convs if c._groups == 1 and list(c._kernel_size) != [1, 1]]}
    head = linears[-1:]
    original, _ = ppocr.exact_match(ppocr.paddle_inference_runner(folder), images, texts, chars)
    print(f"{name}: float original (oneDNN) {original:.0%} on {len(texts)} lines; kxk convs: {kinds['kxk']}")
    variants = {"only the head float": head, **{f"{k} float too": head + v for k, v in kinds.items()},
                **{f"{n} float too": head + [n] for n in kinds["kxk"]}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, skip) in enumerate(variants.items()):
            observed = prepare_ptq(model, algo="hist", input_shape=SHAPE, skip_layers=skip)
            calibrate(observed, calibration)
            prefix = export_quantized(convert(observed), Path(tmp) / str(i), input_shape=SHAPE)
            scores = [ppocr.exact_match(InferenceModel(prefix, runtime=rt, threads=1).run, images, texts, chars)[0]
                      for rt in ("onednn_int8", "cpu")]
            print(f"  {label:32s} oneDNN {scores[0]:.0%}  without oneDNN {scores[1]:.0%}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
