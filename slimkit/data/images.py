"""Inputs from files: a folder of images (with a preprocessing hook or built-in resize/normalise) or `.npy` arrays.

    data: {images: photos/, size: [32, 32], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
    data: {images: lines/, preprocess: mypackage.ocr:prepare}      # fn(image HWC uint8) -> model input
    data: {inputs: x.npy}                                          # or with labels: {inputs: x.npy, labels: y.npy}

Images are read once, in file-name order (sub-folders included), into memory. The hook
gets each image as a numpy array, height x width x channels, uint8, RGB (one channel with
`color: gray`), and returns the model's input for that image (e.g. [C, H, W] float32); the
built-in steps instead resize to `size` (bilinear), scale to [0, 1], normalise with `mean`
and `std` per channel and put the channels first.
"""

from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.imports import import_object

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(folder):
    """The image files under `folder`, sorted; DataError when there is no such folder or no image in it."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.images: no folder {folder}", "give the folder holding your images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"data.images: no image in {folder}", f"put {', '.join(IMAGE_SUFFIXES)} files there")
    return files


def preprocess_function(config):
    """The user's preprocessing hook (a function, or `package.module:function`), or None for the built-in steps."""
    hook = config.preprocess
    if hook is None or callable(hook):
        return hook
    found = import_object(hook, lambda message, hint: ConfigError("data.preprocess", message, hint))
    if not callable(found):
        raise ConfigError("data.preprocess", f"{hook} is not a function", "name a function image -> array")
    return found


def load_images(config):
    """(inputs [N, ...] float32, description) of the image folder `config.images`, preprocessed."""
    from PIL import Image  # a dependency of matplotlib, which slimkit requires

    hook = preprocess_function(config)
    files = image_files(config.images)
    arrays = []
    for path in files:
        try:
            with Image.open(path) as opened:
                image = opened.convert("L" if config.color == "gray" else "RGB")
                if hook is None and config.size is not None:
                    image = image.resize((config.size[1], config.size[0]), Image.BILINEAR)
                pixels = np.asarray(image)
        except OSError as err:
            raise DataError(f"data.images: cannot read {path}: {err}", "replace or remove the file") from None
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        arrays.append(_run_hook(hook, pixels, path) if hook is not None else _builtin(pixels, config))
        if arrays[-1].shape != arrays[0].shape:
            hint = ("make the preprocessing return one shape for every image" if hook is not None else
                    "set data.size: [height, width] to resize every image to one size")
            raise DataError(f"data.images: {path.name} gives an input of shape {list(arrays[-1].shape)}, "
                            f"{files[0].name} one of {list(arrays[0].shape)}", hint)
    steps = getattr(hook, "__module__", "") + ":" + getattr(hook, "__qualname__", "") if hook is not None else {
        "size": config.size, "scale": "1/255", "mean": config.mean, "std": config.std, "color": config.color}
    description = {"images": str(Path(config.images).expanduser()), "files": len(files), "preprocess": steps}
    return np.stack(arrays).astype(np.float32), description


def _run_hook(hook, pixels, path):
    try:
        out = np.asarray(hook(pixels), dtype=np.float32)
    except Exception as err:  # the user's function: say which image it failed on
        raise DataError(f"data.preprocess failed on {path}: {type(err).__name__}: {err}",
                        "the function gets an image as a height x width x channels uint8 array and returns the "
                        "model's input, e.g. [C, H, W] float32") from None
    return out


def _builtin(pixels, config):
    x = pixels.astype(np.float32) / 255.0
    channels = x.shape[-1]
    for key in ("mean", "std"):
        values = getattr(config, key)
        if values is not None and len(values) not in (1, channels):
            raise ConfigError(f"data.{key}", f"{len(values)} values for images of {channels} channel(s)",
                              f"give 1 or {channels} values")
    if config.mean is not None:
        x = x - np.asarray(config.mean, np.float32)
    if config.std is not None:
        x = x / np.asarray(config.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_arrays(config):
    """(inputs, labels or None, description) of the `.npy` files `config.inputs` and `config.labels`."""
    loaded = []
    for key in ("inputs", "labels"):
        name = getattr(config, key)
        if name is None:
            loaded.append(None)
            continue
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(f"data.{key}: file not found: {path}", "give the path of a .npy file (np.save)")
        try:
            loaded.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise DataError(f"data.{key}: cannot read {path} as a .npy array: {err}",
                            "write it with numpy.save") from None
    description = {"inputs": str(config.inputs), "labels_file": config.labels}
    return loaded[0], loaded[1], description
