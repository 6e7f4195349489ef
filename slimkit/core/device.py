"""Which device a run uses (`auto`, `cpu`, `gpu`, `gpu:N`), checked against the installed Paddle.

`resolve` turns the option into "cpu" or "gpu:N" and refuses, before any work, a GPU the
installed Paddle cannot use (built without CUDA, or fewer GPUs visible than asked for).
`using` runs a block on a device and puts the caller's `paddle.get_device()` back after it:
slimkit leaves the user's Paddle session as it was. Inside the block everything slimkit
creates (input tensors, the new parameters of a pruned layer, predictors) lands on the
session's device, so a run moves its model there once (`move`) and the rest follows.
"""

import contextlib
import os

import paddle

from .errors import ConfigError

CHOICES = "auto, cpu, gpu or gpu:N"
DOC = ("where the model, every tensor slimkit creates, training, evaluation, the sensitivity scan and the deployed "
       "latency run: `auto` (the GPU when the installed Paddle is compiled with CUDA and sees one, else the CPU), "
       "`cpu`, `gpu` (the first GPU) or `gpu:N`")
INSTALL_GPU = ("use device: cpu (or auto), or install the GPU build paddlepaddle-gpu 3.3 for your CUDA "
               "(https://www.paddlepaddle.org.cn/install/quick)")


def cuda():
    """(compiled with CUDA, GPUs visible) of the installed Paddle: the one place slimkit asks."""
    if not paddle.device.is_compiled_with_cuda():
        return False, 0
    return True, int(paddle.device.cuda.device_count())


def parse(device, path="device"):
    """("auto" | "cpu" | "gpu", index or None) of a device option; a ConfigError naming `path` otherwise."""
    text = device.strip().lower() if isinstance(device, str) else ""
    if text in ("auto", "cpu"):
        return text, None
    kind, colon, index = text.partition(":")
    if kind == "gpu" and (not colon or index.isdigit()):
        return "gpu", int(index) if colon else None
    raise ConfigError(path, f"{device!r} is not a device", f"use {CHOICES}")


def resolve(device="auto", path="device"):
    """"cpu" or "gpu:N" for a device option; a ConfigError when the installed Paddle cannot use it."""
    kind, index = parse(device, path)
    compiled, count = cuda()
    if kind == "cpu" or (kind == "auto" and not count):
        return "cpu"
    if kind == "auto":
        return f"gpu:{launched_gpu()}"
    if not compiled:
        raise ConfigError(path, f"{device!r} needs a GPU, and paddle {paddle.__version__} here is compiled "
                                "without CUDA", INSTALL_GPU)
    index = launched_gpu() if index is None else index
    if index >= count:
        seen = (f"{count} GPU{'s' * (count != 1)} (gpu:0 to gpu:{count - 1})" if count else "no GPU")
        raise ConfigError(path, f"{device!r} is not available: paddle {paddle.__version__} here sees {seen}",
                          "pick a visible GPU (check CUDA_VISIBLE_DEVICES and nvidia-smi), or use device: auto")
    return f"gpu:{index}"


def launched_gpu():
    """The GPU of this process: paddle.distributed.launch gives each rank its own in FLAGS_selected_gpus."""
    selected = (os.environ.get("FLAGS_selected_gpus") or "0").split(",")[0]
    return int(selected) if selected.isdigit() else 0


def tensorrt_version():
    """The TensorRT version the installed Paddle was compiled with, (0, 0, 0) for none."""
    try:
        return tuple(paddle.inference.get_trt_compile_version())
    except (AttributeError, RuntimeError):
        return (0, 0, 0)


def check_tensorrt(device, path="report.tensorrt"):
    """A ConfigError unless `device` (resolved) is a GPU and the installed Paddle has TensorRT."""
    if not device.startswith("gpu"):
        raise ConfigError(path, f"TensorRT runs on a GPU, and this run's device is {device}",
                          "set device: gpu, or tensorrt: false")
    if not any(tensorrt_version()):
        raise ConfigError(path, f"paddle {paddle.__version__} here is compiled without TensorRT",
                          "set tensorrt: false (the GPU predictor runs without it), or install a Paddle "
                          "build with TensorRT")


def current():
    """The session's device, as `paddle.get_device()` names it ("cpu", "gpu:0", ...)."""
    return paddle.get_device()


@contextlib.contextmanager
def using(device):
    """Run the block on `device` (an option value, resolved first); the caller's paddle.get_device() comes back."""
    resolved = resolve(device)
    previous = paddle.get_device()
    paddle.set_device(resolved)
    try:
        yield resolved
    finally:
        paddle.set_device(previous)


def place_name(place):
    """"cpu" or "gpu:N" of a paddle Place (pinned host memory counts as the CPU)."""
    return f"gpu:{place.gpu_device_id()}" if place.is_gpu_place() else "cpu"


def of_model(model):
    """The device the model's first parameter is on; the session's for a model without parameters."""
    for param in model.parameters():
        return place_name(param.place)
    return current()


def move(model, device):
    """Put the model's parameters and buffers on `device` ("cpu" or "gpu:N"), in place; returns the model."""
    if any(place_name(t.place) != device for t in [*model.parameters(), *model.buffers()]):
        model.to(device=device)
    return model


@contextlib.contextmanager
def model_on(model, device=None):
    """The block runs on `device` (default: where `model` is), with `model` moved there; yields the device."""
    with using(of_model(model) if device is None else device) as used:
        move(model, used)
        yield used


def describe(device):
    """The device for reports: 'CPU x86_64, 2 cores, avx2 fma' or 'GPU 0 (<name>, CUDA 12.6)'."""
    if not str(device).startswith("gpu"):
        from .cpu import cpu_description

        return f"CPU {cpu_description()}"
    index = int(str(device).partition(":")[2] or 0)
    return f"GPU {index} ({paddle.device.cuda.get_device_name(index)}, CUDA {paddle.version.cuda()})"


def record(requested, used):
    """What a report says about the device: the option given, the device used and its description."""
    return {"requested": requested, "used": used, "name": describe(used)}


def synchronize(device=None):
    """Wait for the GPU's queued work (a no-op on the CPU, whose ops finish before they return)."""
    device = current() if device is None else device
    if str(device).startswith("gpu"):
        paddle.device.synchronize(device)
