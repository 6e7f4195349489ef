"""ONNX export of a Paddle Inference model (paddle2onnx), run and verified in ONNX Runtime.

`convert` turns `model.pdmodel` + `model.pdiparams` into `model.onnx` with paddle2onnx, in
a child process: paddle2onnx prints a screen of logs from C++, leaves temporary folders
behind and aborts the whole process on an operator it cannot map, none of which may reach
the user's session. `OnnxModel` is the ONNX Runtime twin of Paddle's predictor wrapper
(`run(numpy) -> numpy`, `evaluate(engine, split)`), so the same timer and the same
evaluation serve both. `verify` compares the two on batches of inputs (the run's evaluated
split, through the engine's `batches`, or seeded random inputs when the data is not at hand:
no labels are needed) and says whether the ONNX file may be shipped. What paddle2onnx
cannot convert as Paddle saves it is rewritten first (slimkit.compat.onnx_ready_program);
`check_convertible` tries the whole conversion on a model before any work.
"""

import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle

from .. import compat
from ..core.errors import ConfigError, ModelError
from .paddle_inference import INFERENCE_DIR, OUTPUTS_FILE, SIMULATED_OPS, InferenceModel, read_output_paths

ONNX_DIR = "onnx"  # inside a stage folder
ONNX_FILE = "model.onnx"
RECORD_FILE = "verification.json"
INSTALL_HINT = 'pip install -e ".[onnx]" (or: pip install paddle2onnx onnxruntime)'
REQUIRED = ("paddle2onnx", "onnxruntime")

# Run in the child process. optimize_tool="None": the default (polygraphy) sets
# POLYGRAPHY_AUTOINSTALL_DEPS and may pip-install packages while exporting.
_CONVERT = """
import sys, paddle2onnx
model, params, target, opset = sys.argv[1:5]
paddle2onnx.export(model, params, target, opset_version=int(opset), auto_upgrade_opset=False,
                   enable_onnx_checker=True, optimize_tool="None", deploy_backend="onnxruntime")
"""


def require_onnx(path="export.formats"):
    """Raise ConfigError naming the install command when paddle2onnx or onnxruntime is missing."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(path, f"the onnx format needs {' and '.join(missing)}, not installed here",
                          INSTALL_HINT)


def quantize_ops(prefix):
    """Quantize/dequantize op types in a saved legacy program (empty for a float model)."""
    with compat.legacy_ir():
        program = paddle.static.Program.parse_from_string(Path(str(prefix) + ".pdmodel").read_bytes())
    return sorted({op.type for block in program.blocks for op in block.ops} & SIMULATED_OPS)


def convert(prefix, target, opset=13, int8=None):
    """Write `target` (.onnx) from the Paddle Inference files `prefix`.pdmodel/.pdiparams; returns the opset.

    A float model goes through paddle2onnx as it is; an int8 one (QAT/PTQ export) becomes
    ONNX QDQ with the same scales (see onnx_int8.py).
    """
    prefix, target = str(Path(prefix).resolve()), Path(target).resolve()  # the child runs elsewhere
    for suffix in (".pdmodel", ".pdiparams"):
        if not Path(prefix + suffix).is_file():
            raise ModelError(f"{prefix + suffix} does not exist", "export the stage for Paddle Inference first")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        partial = Path(tmp) / ONNX_FILE  # moved into place only once complete
        if int8 if int8 is not None else quantize_ops(prefix):
            from .onnx_int8 import float_program, insert_qdq

            layers = float_program(prefix, Path(tmp) / "float" / "model")
            _paddle2onnx(str(Path(tmp) / "float" / "model"), partial, opset, tmp)
            insert_qdq(partial, layers)
        else:
            _paddle2onnx(prefix, partial, opset, tmp)
        os.replace(partial, target)
    return opset_of(target)


def _paddle2onnx(prefix, target, opset, tmp):
    prefix = compat.onnx_ready_program(prefix, Path(tmp) / "rewritten" / "model")
    env = {**os.environ, "TMPDIR": tmp, "GLOG_minloglevel": "2", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", _CONVERT, prefix + ".pdmodel", prefix + ".pdiparams", str(target),
                           str(opset)], capture_output=True, text=True, env=env, cwd=tmp)
    if done.returncode != 0 or not Path(target).is_file():
        raise ModelError(f"paddle2onnx could not convert {prefix}.pdmodel: {_last_error(done)}",
                         "see docs/deployment.md for what converts to ONNX; --format paddle ships it as it is")


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _last_error(done):
    # paddle2onnx names the cause in its first "[ERROR]" line; an abort's summary follows it. It colours its
    # lines for a terminal: the codes would reach report.md and the notes as raw bytes.
    text = ANSI_ESCAPE.sub("", done.stderr + done.stdout)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    flagged = [line for line in lines if "[ERROR]" in line] or [line for line in lines if "error" in line.lower()][-1:]
    return (flagged or lines[-1:] or [f"exit code {done.returncode}"])[0][:300]


def opset_of(path):
    """The default-domain opset an ONNX file was written for."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


class OnnxModel:
    """An ONNX file loaded in ONNX Runtime on CPU: run, evaluate, latency (the interface of InferenceModel).

    `optimize=True` is the session a user gets by default (every graph optimization: QDQ
    pairs become int8 kernels where ORT has them); `False` keeps only basic constant
    folding, so an int8 QDQ file computes exactly what its scales say, in float.
    """

    # One evaluation, one output selection and one timer for every runtime: they only call self.run_all.
    evaluate = InferenceModel.evaluate
    evaluate_batches = InferenceModel.evaluate_batches
    latency = InferenceModel.latency
    measure = InferenceModel.measure
    run = InferenceModel.run
    position = InferenceModel.position

    def __init__(self, path, threads=1, optimize=True, output=None):
        require_onnx("")
        import onnxruntime as ort

        self.path = str(path)
        if not Path(self.path).is_file():
            raise ModelError(f"{self.path} does not exist", "export the stage to ONNX first")
        self.threads, self.optimize = threads, optimize
        self.session = ort.InferenceSession(self.path, self._options(), providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        # paddle2onnx keeps the order of Paddle's outputs: the export's outputs.json, copied beside the file, holds.
        self.output, self.output_paths = output, read_output_paths(Path(self.path).parent)
        self.position(output)

    def _options(self, optimized_path=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # ORT warns about unused initializers paddle2onnx leaves: not ours to fix
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_ENABLE_ALL if self.optimize else level.ORT_ENABLE_BASIC
        if optimized_path:
            options.optimized_model_filepath = str(optimized_path)
        return options

    def run_all(self, images):
        """Every output (numpy) of a float32 NCHW batch, in the export's order."""
        return self.session.run(None, {self._input: np.ascontiguousarray(images, dtype=np.float32)})

    def output_count(self):
        return len(self.session.get_outputs())

    def runner(self, input_shape):
        """A no-argument callable running the session on a fixed random batch (for report.timing)."""
        feed = {self._input: np.random.RandomState(0).randn(*input_shape).astype(np.float32)}
        return lambda: self.session.run(None, feed)

    def optimized_ops(self):
        """Op type -> count of the graph ONNX Runtime runs after its optimizations."""
        import onnx
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "optimized.onnx"
            ort.InferenceSession(self.path, self._options(path), providers=["CPUExecutionProvider"])
            graph = onnx.load(str(path)).graph
        return dict(collections.Counter(node.op_type for node in graph.node))

    def latency_method(self, input_shape, warmup, runs):
        return (f"ONNX Runtime CPUExecutionProvider ({self.threads} thread), input {list(input_shape)}; "
                f"median of {runs} runs after {warmup} warm-up runs")


def compare(onnx_model, paddle_model, inputs, output=None):
    """ONNX Runtime vs Paddle's predictor on `inputs()` (batches of images, or of (images, labels)): the max abs
    difference of every output, and the top-1 agreement (argmax over axis 1) of the output `output` names."""
    diff, agree, counted, total = 0.0, 0, 0, 0
    for batch in inputs():
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = x.numpy() if isinstance(x, paddle.Tensor) else np.asarray(x, dtype=np.float32)
        every_ours, every_theirs = onnx_model.run_all(x), paddle_model.run_all(x)
        diff = max([diff] + [float(np.abs(a - b).max()) for a, b in zip(every_ours, every_theirs)])
        ours, theirs = every_ours[onnx_model.position(output)], every_theirs[paddle_model.position(output)]
        if ours.ndim >= 2:  # a class per sample, or per pixel for a segmenter
            same = ours.argmax(axis=1) == theirs.argmax(axis=1)
        else:  # one number per sample: the same value
            same = np.abs(ours - theirs) <= 1e-4
        agree += int(same.sum())
        counted += same.size
        total += len(x)
    return {"samples": total, "max_abs_diff": diff, "top1_agreement": agree / max(counted, 1)}


def random_inputs(input_shape, samples=64, batch_size=32, seed=0):
    """A zero-argument callable giving seeded N(0, 1) input batches of `input_shape` (for data not at hand)."""
    x = np.random.RandomState(seed).randn(samples, *list(input_shape)[1:]).astype(np.float32)
    return lambda: (x[i:i + batch_size] for i in range(0, samples, batch_size))


def verify(path, prefix, inputs, int8, tolerance=1e-4, min_agreement=0.99, output=None):
    """The verification record of `path` against the Paddle files `prefix` on `inputs()`; `ok`: may it ship.

    Float: the outputs must agree within `tolerance` and the top-1 classes on at least
    `min_agreement` of the samples. Int8: the outputs cannot agree to `tolerance` (an
    activation on a rounding boundary moves one step either way), so the top-1 classes must
    agree, both for the QDQ arithmetic itself (ORT without its int8 kernels) and for the
    int8 kernels ORT picks on this CPU; both differences are recorded.
    """
    # Paddle's own arithmetic of the same scales, on the CPU like the ONNX Runtime session it is compared with
    reference = InferenceModel(prefix, runtime="cpu", device="cpu")
    runtime = OnnxModel(path)
    record = {**compare(runtime, reference, inputs, output), "tolerance": tolerance,
              "min_top1_agreement": min_agreement, "int8": int8}
    checks = [record["top1_agreement"] >= min_agreement]
    if int8:
        exact = record["qdq_arithmetic"] = compare(OnnxModel(path, optimize=False), reference, inputs, output)
        record["ort_ops"] = runtime.optimized_ops()
        checks.append(exact["top1_agreement"] >= min_agreement)
    else:
        checks.append(record["max_abs_diff"] <= tolerance)
    record["ok"] = bool(record["samples"]) and all(checks)
    return record


def versions():
    from importlib.metadata import version

    return {name: version(name) for name in REQUIRED}


def export_onnx(prefix, folder, inputs, output=None, opset=13, tolerance=1e-4, min_agreement=0.99,
                inputs_text="the evaluated split"):
    """Convert, reload and verify on `inputs()` (see `compare`); writes `folder/model.onnx` + `verification.json`,
    returns the record. `output` is the model output the agreement reads (task.output)."""
    require_onnx()
    folder = Path(folder)
    int8 = bool(quantize_ops(prefix))
    opset = convert(prefix, folder / ONNX_FILE, opset, int8)
    if Path(prefix).parent.joinpath(OUTPUTS_FILE).is_file():
        shutil.copy(Path(prefix).parent / OUTPUTS_FILE, folder / OUTPUTS_FILE)
    record = {"file": str(folder / ONNX_FILE), "source": f"{prefix}.pdmodel", "opset": opset, **versions(),
              "inputs": inputs_text,
              **verify(folder / ONNX_FILE, prefix, inputs, int8, tolerance, min_agreement, output)}
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return record


def check_convertible(model, input_shape, opset=13):
    """None if paddle2onnx converts `model` (exported for Paddle Inference), else why not (one line).

    Run before any work when the onnx format is asked: a model it cannot convert is refused
    then, not found out after training.
    """
    import copy

    from .paddle_inference import export_float

    with tempfile.TemporaryDirectory() as tmp:
        probe = copy.deepcopy(model)
        probe.eval()
        try:
            prefix = export_float(probe, Path(tmp) / INFERENCE_DIR, input_shape)
        except Exception:  # no Paddle Inference export at all: the stage notes say so; nothing to convert
            return None
        try:
            convert(prefix, Path(tmp) / ONNX_FILE, opset, int8=False)
        except ModelError as err:
            return err.message.partition(".pdmodel: ")[2] or err.message  # the temporary folder says nothing
    return None


def mismatch_text(record):
    """The loud one-line statement of a failed conversion or verification."""
    if record.get("error"):
        return f"no ONNX export: {record['error']}"
    if record["int8"]:
        exact = record["qdq_arithmetic"]
        return (f"ONNX int8 export does NOT match Paddle ({record['file']}): top-1 agreement "
                f"{record['top1_agreement']:.2%} with ONNX Runtime's int8 kernels on this CPU, "
                f"{exact['top1_agreement']:.2%} for the QDQ arithmetic (minimum {record['min_top1_agreement']:.0%}); "
                "ORT's int8 kernels depend on the CPU (VNNI): do not ship it to this CPU")
    return (f"ONNX export does NOT match Paddle ({record['file']}): max abs diff {record['max_abs_diff']:.3g} "
            f"(tolerance {record['tolerance']:g}), top-1 agreement {record['top1_agreement']:.2%} "
            f"(minimum {record['min_top1_agreement']:.0%}); do not ship it")
