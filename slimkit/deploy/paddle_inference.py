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
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle

from .. import compat
from ..core import device as devices
from ..core.errors import ConfigError, CorruptFileError, ModelError
from ..core.files import read_json
from ..core.surgery import eval_mode
from ..models.checkpoint import INFERENCE_DIR  # a stage folder's export
from ..report.console import fds_redirected, flush_native
from ..report.measure import saved_size
from .fold import fold_constants

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


def input_spec(input_shape, model=None):
    """The export's inputs: an imported program's own (names, dtypes, dynamic sizes), else `x` [None, C, H, W]."""
    signature = getattr(model, "program_signature", None)
    if signature is not None:
        return model.input_spec()
    return [paddle.static.InputSpec([None, *list(input_shape)[1:]], "float32", "x")]


def output_names(model):
    """The output names an export of `model` keeps: an imported program's own, else None (paddle's names)."""
    signature = getattr(model, "program_signature", None)
    return [o["name"] for o in signature["outputs"]] if signature is not None else None


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
    return _jit_save(model, folder, input_shape)


def export_int8(converted, folder, input_shape, weight_bits=8):
    """Write the int8 export (int weights on disk) of a converted QAT/PTQ model; returns the prefix."""
    if needs_convert(converted):
        raise ModelError("the quantized model is not converted yet", "call slimkit.quant.convert(model) first")
    return _jit_save(converted, folder, input_shape, weight_bits)


def _jit_save(model, folder, input_shape, weight_bits=None):
    """`paddle.jit.save` of `model` as `folder/model.*` under the legacy IR; returns the prefix `folder/model`.

    Saved to a temporary folder first, then rewritten into `folder`: constant multiplies and adds
    folded into the convolutions (slimkit.deploy.fold), the weights stored as int (`weight_bits`),
    the outputs named as an imported program's.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / Path(MODEL_FILE).stem
    names = output_names(model)
    # Traced in eval mode whatever mode the model is in: an inference program (batch-norm statistics, no
    # training-only branches), the same program however the model got here (trained, or restored on resume).
    with tempfile.TemporaryDirectory() as tmp, compat.legacy_ir(), compat.stable_export_names(model), \
            eval_mode(model):
        raw = str(Path(tmp) / Path(MODEL_FILE).stem)
        paddle.jit.save(model, raw, input_spec=input_spec(input_shape, model))
        _rewrite(raw, str(prefix), weight_bits, names)
        compat.strip_callstacks(folder / MODEL_FILE)
    write_output_paths(model, folder, input_shape)
    return prefix


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
    if not path.is_file():
        return None
    record = read_json(path, "export the model again (in a run: delete that stage folder and rerun with --resume)")
    if not (isinstance(record, dict) and isinstance(record.get("outputs"), list)):
        raise CorruptFileError(f"{path} is damaged: not a list of output paths", "export the model again")
    return record["outputs"]


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


def _rewrite(source, target, weight_bits=None, names=None):
    """Save the legacy-IR export `source` as `target`: constants folded, int weights (`weight_bits`), outputs renamed.

    Constant multiplies and adds beside convolutions are folded into them (`fold_constants`), so
    the predictor fuses each conv with its activation again.
    `weight_bits`: quantize the float weights once, offline, and keep them as int8 (int16 above
    8 bits): the `dequantize_linear` in front of each conv/matmul reads them with their scales.
    `names`: the output names to give the export (an imported program's own, for a drop-in file).
    """
    from paddle.base.framework import IrGraph
    from paddle.framework import core
    from paddle.static.quantization import QuantWeightPass

    paddle.enable_static()  # undone by the caller's legacy_ir()
    place = paddle.CPUPlace()  # a rewrite of files on disk, on any device's run: host memory is where they go
    executor = paddle.static.Executor(place)
    scope = paddle.static.Scope()
    with paddle.static.scope_guard(scope):
        program, feeds, fetches = paddle.static.load_inference_model(source, executor)
        if weight_bits is not None:
            graph = IrGraph(core.Graph(program.desc), for_test=True)
            QuantWeightPass(scope, place, quant_bits=8 if weight_bits <= 8 else 16).apply(graph)
            program = graph.to_program()
        fold_constants(program, scope, place)
        block = program.global_block()
        fetch_names = [f.name for f in fetches]
        for old, new in zip(fetch_names, names or []):
            _rename_var(block, old, new)
        fetches = [block.var(n) for n in (names or fetch_names)]
        paddle.static.save_inference_model(target, [block.var(n) for n in feeds], fetches, executor,
                                           program=program, clip_extra=True)


def _rename_var(block, old, new):
    if old == new:
        return
    if block.has_var(new):  # an inner tensor of the export happens to bear the name: it gets another
        block._rename_var(new, f"{new}.slimkit_inner")
    block._rename_var(old, new)


def program_file(prefix):
    """The program file of an export: `prefix.pdmodel` (slimkit's exports) or `prefix.json` (Paddle 3's), or None."""
    for suffix in (".pdmodel", ".json"):
        if Path(f"{prefix}{suffix}").is_file():
            return f"{prefix}{suffix}"
    return None


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
    return saved_size(program_file(prefix) or prefix + ".pdmodel") + saved_size(prefix + ".pdiparams")


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
        self.program_file = program_file(self.prefix)
        if self.program_file is None or not Path(self.prefix + ".pdiparams").is_file():
            missing = f"{self.prefix}.pdiparams" if self.program_file else f"{self.prefix}.pdmodel (or .json)"
            raise ModelError(f"{missing} does not exist", "export the model first")
        self.predictor = _create_predictor(self._config())
        self._input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self._outputs = [self.predictor.get_output_handle(name) for name in self.predictor.get_output_names()]
        self.output, self.output_paths = output, read_output_paths(Path(self.prefix).parent)
        self.position(output)  # a bad `output` fails here, not at the first run

    @property
    def on_gpu(self):
        return self.device.startswith("gpu")

    def _config(self, optim_dir=None):
        config = paddle.inference.Config(self.program_file, self.prefix + ".pdiparams")
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

    def evaluate(self, engine, split="test", max_batches=None, task=None):
        """The task's metrics (e.g. top-1/top-5) of the exported model on a split, like `Engine.evaluate`.

        `task` is the objective measured (default: the engine's, a slimkit.Engine's `task`); the
        batches come from the engine's `batches`.
        """
        task = task if task is not None else engine.task
        return self.evaluate_batches(engine.batches(split, max_batches=max_batches), task.metric(), task.config.output)

    def evaluate_batches(self, batches, metric, output=None):
        """`metric` (an accumulator of slimkit.train.metrics) of the exported model's `output` over (images, labels)."""
        from ..data.labels import map_labels

        total = 0
        for images, labels in batches:
            metric.update(self.run(images.numpy(), output), map_labels(lambda t: t.numpy(), labels))
            total += int(images.shape[0])
        return {**metric.result(), "samples": total}

    def latency(self, input_shape, warmup=10, runs=50):
        """Median wall time (ms) of `runs` runs of the model on a random batch of `input_shape`."""
        from ..report.timing import Precision

        return self.measure(input_shape, Precision.fixed(warmup, runs)).timing("model").median

    def measure(self, input_shape, precision=None, clock=None):
        """A report.timing Measurement of the model (runner "model"): its median latency with its interval."""
        from ..report.timing import measure

        return measure({"model": self.runner(input_shape)}, None, precision, clock)

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
    """The op types of an exported program (legacy IR .pdmodel; none read from a Paddle 3 .json)."""
    if not Path(str(prefix) + ".pdmodel").is_file():
        return set()
    with compat.legacy_ir():
        program = paddle.static.Program.parse_from_string(Path(str(prefix) + ".pdmodel").read_bytes())
    return {op.type for block in program.blocks for op in block.ops}


def int8_verdict(ops):
    """'int8 kernels' if the optimized program quantizes into int8 ops, else 'simulated'."""
    if INT8_OPS & set(ops):
        return "int8 kernels"
    return "simulated"
