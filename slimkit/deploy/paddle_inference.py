"""The deployed model in Paddle Inference: export (float or int8) and the predictor that runs the files.

`export_float` saves a model with `paddle.jit.save` under the legacy program IR (the PIR
save of quantize/dequantize layers rejects batch -1, and a fixed-batch PIR save gives a
predictor error). `export_int8` does the same for a converted QAT/PTQ model, then runs
Paddle's `QuantWeightPass` so the weights are stored on disk as int8 with their scales.
`export_stage` is the one export the pipeline writes into every stage folder
(`<stage>/inference/model.pdmodel` + `model.pdiparams`). `InferenceModel` reloads the files
with `paddle.inference` (Config + create_predictor) to run, evaluate, time and inspect them.

A model with several outputs (a list, tuple or dict, nested or not) is exported with all
of them, flattened the way `paddle.jit.save` does (a dict's values sorted by key);
`outputs.json` beside the files says which model output each exported one is, so the
output `task.output` names is the one evaluated, in Paddle Inference and in ONNX Runtime.
"""

import collections
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle

from .. import compat
from ..core import device as devices
from ..core.errors import ConfigError, ModelError
from ..core.surgery import eval_mode
from ..report.console import fds_redirected, flush_native
from ..report.measure import saved_size

INFERENCE_DIR = "inference"  # inside a stage folder
MODEL_FILE = "model.pdmodel"
PARAMS_FILE = "model.pdiparams"
OUTPUTS_FILE = "outputs.json"  # which model output each exported output is
RUNTIMES = ("onednn_int8", "cpu")
GPU_MEMORY_MB = 256  # the predictor's initial GPU memory pool; Paddle grows it as the model needs
TENSORRT_WORKSPACE = 1 << 30
TENSORRT_MAX_BATCH = 32  # the export's batch axis is -1: TensorRT builds its engine for batches up to this
# Ops Paddle Inference's CPU passes leave behind when they run int8 kernels (oneDNN) ...
INT8_OPS = {"quantize", "requantize"}
# ... and the ones that mean the quantization is only simulated in float.
SIMULATED_OPS = {"quantize_linear", "dequantize_linear", "fake_quantize_dequantize_moving_average_abs_max",
                 "fake_channel_wise_quantize_dequantize_abs_max"}


def input_spec(input_shape):
    return [paddle.static.InputSpec([None, *list(input_shape)[1:]], "float32", "x")]


def needs_convert(model):
    """True if `model` holds QAT/PTQ layers not yet converted to exportable quantize/dequantize layers."""
    from paddle.nn.quant.format import ConvertibleQuantedLayer

    return any(isinstance(l, ConvertibleQuantedLayer) and not l.converted for l in model.sublayers())


def is_quantized(model):
    """True if `model` holds quantize/dequantize layers (converted or not)."""
    from paddle.nn.quant.format import ConvertibleQuantedLayer, LinearQuanterDequanter

    return any(isinstance(l, (ConvertibleQuantedLayer, LinearQuanterDequanter)) for l in model.sublayers())


def export_float(model, folder, input_shape):
    """Write `folder/model.pdmodel` + `model.pdiparams` of a float model; returns the prefix `folder/model`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, compat.legacy_ir():
        raw = str(Path(tmp) / "model")
        paddle.jit.save(model, raw, input_spec=input_spec(input_shape))
        for suffix in (".pdmodel", ".pdiparams"):
            shutil.copy(raw + suffix, folder / ("model" + suffix))
    write_output_paths(model, folder, input_shape)
    return folder / "model"


def export_int8(converted, folder, input_shape, weight_bits=8):
    """Write the int8 export (int weights on disk) of a converted QAT/PTQ model; returns the prefix."""
    if needs_convert(converted):
        raise ModelError("the quantized model is not converted yet", "call slimkit.quant.convert(model) first")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, compat.legacy_ir():
        raw = str(Path(tmp) / "model")
        paddle.jit.save(converted, raw, input_spec=input_spec(input_shape))
        _store_int_weights(raw, str(folder / "model"), weight_bits)
    write_output_paths(converted, folder, input_shape)
    return folder / "model"


def output_paths(outputs, path=()):
    """Where each tensor of a model output sits ([key or index, ...]), in the order an export returns them.

    `paddle.jit.save` flattens nested lists, tuples and dicts, a dict's values sorted by key.
    """
    if isinstance(outputs, dict):
        return [p for key in sorted(outputs) for p in output_paths(outputs[key], (*path, key))]
    if isinstance(outputs, (list, tuple)):
        return [p for i, o in enumerate(outputs) for p in output_paths(o, (*path, i))]
    return [list(path)] if hasattr(outputs, "shape") else []


def write_output_paths(model, folder, input_shape):
    """`folder/outputs.json`: the output paths of `model` (one eval forward), in the export's order."""
    with eval_mode(model), paddle.no_grad():
        outputs = model(paddle.zeros([1, *list(input_shape)[1:]], dtype="float32"))
    Path(folder, OUTPUTS_FILE).write_text(json.dumps({"outputs": output_paths(outputs)}))


def read_output_paths(folder):
    """The output paths `write_output_paths` stored in `folder`, or None (an export made without them)."""
    path = Path(folder, OUTPUTS_FILE)
    return json.loads(path.read_text())["outputs"] if path.is_file() else None


def output_position(paths, key, count):
    """Which of an export's `count` outputs is the model output `key` (an index or dict key, as `task.output`).

    None is the first, as for the eager model; an index counts the top-level outputs of a
    list or tuple (negative from the end); a nested output is read by its first tensor.
    """
    if key is None or (key == 0 and (paths is None or paths == [[]])):
        return 0
    if paths is None or len(paths) != count:
        found = "no " + OUTPUTS_FILE if paths is None else f"{OUTPUTS_FILE} listing {len(paths)} of its {count} outputs"
        raise ModelError(f"the export has {found}, so its output {key!r} cannot be found",
                         "export the model again with this version of slimkit")
    tops = list(dict.fromkeys(p[0] for p in paths if p))
    if isinstance(key, int) and all(isinstance(t, int) for t in tops) and -len(tops) <= key < len(tops):
        key = tops[key]
    for position, path in enumerate(paths):
        if path[:1] == [key]:
            return position
    raise ConfigError("task.output", f"the exported model has no output {key!r}; its outputs are "
                                     f"{[str(t) for t in tops] or ['one tensor']}", "name one of them")


def _store_int_weights(source, target, weight_bits):
    # Quantize the float weights once, offline, and keep them as int8 (int16 above 8 bits):
    # the `dequantize_linear` in front of each conv/matmul reads them with their scales.
    from paddle.base.framework import IrGraph
    from paddle.framework import core
    from paddle.static.quantization import QuantWeightPass

    paddle.enable_static()  # undone by the caller's legacy_ir()
    place = paddle.CPUPlace()  # a rewrite of files on disk, on any device's run: host memory is where they go
    executor = paddle.static.Executor(place)
    scope = paddle.static.Scope()
    with paddle.static.scope_guard(scope):
        program, feeds, fetches = paddle.static.load_inference_model(source, executor)
        graph = IrGraph(core.Graph(program.desc), for_test=True)
        QuantWeightPass(scope, place, quant_bits=8 if weight_bits <= 8 else 16).apply(graph)
        program = graph.to_program()
        paddle.static.save_inference_model(target, [program.global_block().var(n) for n in feeds], fetches,
                                           executor, program=program, clip_extra=True)


def stage_export_prefix(stage_folder):
    """Prefix (`.../inference/model`) of the Paddle Inference model a stage folder holds."""
    return Path(stage_folder) / INFERENCE_DIR / "model"


def export_stage(model, stage_folder, input_shape, weight_bits=8):
    """Write the stage's Paddle Inference model to `<stage_folder>/inference/model.*`; returns the prefix.

    A converted QAT/PTQ model is written as the int8 export, any other model as the float one.
    """
    folder = Path(stage_folder) / INFERENCE_DIR
    if is_quantized(model):
        return export_int8(model, folder, input_shape, weight_bits)
    return export_float(model, folder, input_shape)


def exported_size(prefix):
    """Bytes on disk of the program and parameter files of an export."""
    prefix = str(prefix)
    return saved_size(prefix + ".pdmodel") + saved_size(prefix + ".pdiparams")


def program_file(prefix):
    """The exported program of `prefix`: `.pdmodel` (legacy IR), else `.json` (PIR: `paddle.jit.save` of models
    with ops Paddle 3.3 traces under PIR only, such as GELU and attention's matmuls)."""
    legacy = str(prefix) + ".pdmodel"
    return legacy if Path(legacy).is_file() or not Path(str(prefix) + ".json").is_file() else str(prefix) + ".json"


def _create_predictor(config):
    native = ""
    try:
        with native_output_captured() as captured:
            try:
                return paddle.inference.create_predictor(config)
            except Exception:
                native = captured()
                raise
    finally:
        sys.stderr.write(native)  # after the descriptors are back: the user sees why it failed


@contextlib.contextmanager
def native_output_captured():
    # oneDNN's int8 passes print their statistics ("---    quantized 3 fused_conv2d ops")
    # from C++ straight to the process's stderr, ignoring disable_glog_info(): about a
    # hundred lines per predictor. They are kept aside and shown only if creation fails.
    with tempfile.TemporaryFile() as sink, fds_redirected(sink.fileno()) as redirected:
        def captured():
            if not redirected:
                return ""
            flush_native()
            sink.seek(0)
            return sink.read().decode(errors="replace")
        yield captured


class InferenceModel:
    """An exported model loaded with Paddle Inference: run, evaluate, time, inspect.

    `runtime="onednn_int8"` enables oneDNN with its int8 passes (quantize/dequantize pairs
    become int8 kernels where oneDNN has them; float models run oneDNN's float kernels);
    `"cpu"` is the plain CPU predictor, which keeps the quantize/dequantize ops and computes
    in float. Both choose the CPU kernels only: on a GPU the predictor runs Paddle's GPU
    kernels (`config.enable_use_gpu`). `device` is "cpu", "gpu" or "gpu:N" (default: the
    session's, `paddle.get_device()`); `threads` are the CPU math threads; `tensorrt=True`
    runs the GPU predictor through TensorRT (int8 for an int8 export), refused with the
    reason when the device is the CPU or Paddle was compiled without TensorRT.
    """

    def __init__(self, prefix, runtime="onednn_int8", threads=1, device=None, tensorrt=False, output=None):
        self.prefix = str(prefix)
        if runtime not in RUNTIMES:
            raise ConfigError("runtime", f"{runtime!r} is not a Paddle Inference runtime",
                              f"use {' or '.join(RUNTIMES)}")
        self.runtime = runtime
        self.threads = int(threads)
        self.device = devices.resolve(devices.current() if device is None else device)
        self.tensorrt = bool(tensorrt)
        if self.tensorrt:
            devices.check_tensorrt(self.device, "tensorrt")
        for path in (program_file(self.prefix), self.prefix + ".pdiparams"):
            if not Path(path).is_file():
                raise ModelError(f"{path} does not exist", "export the model first")
        self.predictor = _create_predictor(self._config())
        self._input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self._outputs = [self.predictor.get_output_handle(name) for name in self.predictor.get_output_names()]
        self.output, self.output_paths = output, read_output_paths(Path(self.prefix).parent)
        self.position(output)  # a bad `output` fails here, not at the first run

    @property
    def on_gpu(self):
        return self.device.startswith("gpu")

    def _config(self, optim_dir=None):
        config = paddle.inference.Config(program_file(self.prefix), self.prefix + ".pdiparams")
        if self.on_gpu:
            config.enable_use_gpu(GPU_MEMORY_MB, int(self.device.partition(":")[2]))
            if self.tensorrt:
                self._enable_tensorrt(config)
        else:
            config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(self.threads)
        if self.runtime == "onednn_int8" and not self.on_gpu:  # oneDNN is a CPU library
            config.enable_mkldnn()
            config.enable_mkldnn_int8()
        else:
            config.disable_mkldnn()
        if optim_dir:
            config.enable_save_optim_model(True)
            config.set_optim_cache_dir(str(optim_dir))
        return config

    def _enable_tensorrt(self, config):
        # An int8 export carries its scales in quantize/dequantize ops: TensorRT reads them
        # (no calibration run); a float export runs in float32.
        int8 = bool(SIMULATED_OPS & _op_types(self.prefix))
        precision = paddle.inference.PrecisionType.Int8 if int8 else paddle.inference.PrecisionType.Float32
        config.enable_tensorrt_engine(workspace_size=TENSORRT_WORKSPACE, max_batch_size=TENSORRT_MAX_BATCH,
                                      min_subgraph_size=3, precision_mode=precision, use_static=False,
                                      use_calib_mode=False)

    def run(self, images, output=None):
        """One output (numpy) of a float32 NCHW batch: `output` (an index or key, as task.output), else the
        one chosen at load (`output=`, default: the first)."""
        return self.run_all(images)[self.position(output)]

    def run_all(self, images):
        """Every exported output (numpy), in the export's order (`output_paths` says which is which)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        self._input.reshape(list(images.shape))
        self._input.copy_from_cpu(images)
        self.predictor.run()
        return [handle.copy_to_cpu() for handle in self._outputs]

    def position(self, output=None):
        """The index, among the exported outputs, of model output `output` (None: the one chosen at load)."""
        return output_position(self.output_paths, self.output if output is None else output, self.output_count())

    def output_count(self):
        return len(self._outputs)

    def runner(self, input_shape):
        """A no-argument callable running the predictor on a fixed random batch (for report.timing)."""
        x = np.random.RandomState(0).randn(*input_shape).astype(np.float32)
        self._input.reshape(list(x.shape))
        self._input.copy_from_cpu(x)
        if not self.on_gpu:
            return self.predictor.run

        def run():  # the GPU runs the kernels queued by run(): the clock stops once they are done
            self.predictor.run()
            devices.synchronize(self.device)
        return run

    def evaluate(self, engine, split="test", max_batches=None):
        """The task's metrics (e.g. top-1/top-5) of the exported model on a split, like `Engine.evaluate`."""
        from ..train.tasks import metric_of, output_key

        metric = metric_of(engine, engine.data.num_classes)
        return self.evaluate_batches(engine.batches(split, max_batches=max_batches), metric, output_key(engine))

    def evaluate_batches(self, batches, metric, output=None):
        """`metric` (an accumulator of slimkit.train.metrics) of the exported model's `output` over (images, labels)."""
        total = 0
        for images, labels in batches:
            metric.update(self.run(images.numpy(), output), labels.numpy())
            total += int(labels.shape[0])
        return {**metric.result(), "samples": total}

    def latency(self, input_shape, warmup=10, runs=50):
        """Median wall time (ms) of `predictor.run()` on a random batch of `input_shape`."""
        from ..report.timing import time_runners

        return time_runners({"model": self.runner(input_shape)}, warmup=warmup, runs=runs, rounds=1)["model"].median

    def optimized_program(self):
        """The program Paddle Inference runs after its passes (legacy IR), or None if it wrote none."""
        with tempfile.TemporaryDirectory() as tmp:
            _create_predictor(self._config(optim_dir=tmp))
            path = Path(tmp) / "_optimized.pdmodel"
            if not path.is_file():
                return None
            with compat.legacy_ir():
                return paddle.static.Program.parse_from_string(path.read_bytes())

    def optimized_ops(self):
        """Op type -> count of the program Paddle Inference runs after its passes."""
        program = self.optimized_program()
        if program is None:
            return {}
        return dict(collections.Counter(op.type for block in program.blocks for op in block.ops))

    def describe(self):
        """How this predictor runs, for reports: runtime, device and threads."""
        kernels = predictor_text(self.runtime, self.threads, self.device, self.tensorrt)
        return f"Paddle Inference predictor of the exported files ({kernels})"

    def latency_method(self, input_shape, warmup, runs):
        return f"{self.describe()}, input {list(input_shape)}; median of {runs} runs after {warmup} warm-up runs"


def predictor_text(runtime, threads, device, tensorrt=False):
    """'oneDNN, 1 thread' on the CPU, 'gpu:0, TensorRT' on a GPU: what runs a predictor's kernels."""
    if device.startswith("gpu"):
        return f"{device}, TensorRT" if tensorrt else f"{device}, Paddle's GPU kernels"
    engine = "oneDNN" if runtime == "onednn_int8" else "plain CPU (oneDNN off)"
    return f"{engine}, {threads} thread{'s' * (threads != 1)}"


def _op_types(prefix):
    """The op types of an exported program (legacy IR .pdmodel)."""
    with compat.legacy_ir():
        program = paddle.static.Program.parse_from_string(Path(str(prefix) + ".pdmodel").read_bytes())
    return {op.type for block in program.blocks for op in block.ops}


def int8_verdict(ops):
    """'int8 kernels' if the optimized program quantizes into int8 ops, else 'simulated'."""
    if INT8_OPS & set(ops):
        return "int8 kernels"
    return "simulated"
