"""Quantization stages: `qat` (quantization-aware training) and `ptq` (post-training quantization).

Both quantize a copy of the model with Paddle's `paddle.quantization` (plus PaddleSlim's
channel-wise weight quanter and calibration observers), export it for Paddle Inference
with int8 weights into the stage folder (`inference/`), and report what the exported
files do when reloaded: accuracy, size on disk, predictor latency, and whether the CPU
run uses int8 kernels or only simulates quantization.
"""

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import List, Literal, Optional

import numpy as np

from .. import compat
from ..core import device as devices
from ..core.cpu import cpu_description
from ..core.errors import ConfigError
from ..core.files import atomic_write_text
from ..core.schema import option
from ..deploy.paddle_inference import INFERENCE_DIR, InferenceModel, export_float, exported_size, int8_verdict
from ..deploy.stage_latency import FLOAT_EXPORT_DIR, report_precision
from ..report.timing import measure
from ..models.checkpoint import load_into
from ..quant.export import export_quantized
from ..quant.layers import QUANTIZABLE_TYPES, check_layer_types, layers_to_quantize
from ..quant.observers import activation_methods, get_observer
from ..quant.ptq import calibrate, prepare_ptq
from ..quant.qat import convert, keep_float, quantize_for_training, quantized_layer_names
from ..quant.speed import VariantTimer, candidate_groups, keep_float_search
from ..report.measure import count_flops, count_params
from .base import Strategy

__all__ = ["QAT", "PTQ"]

EXPORT_DIR = INFERENCE_DIR
KEPT_FLOAT_FILE = "kept_float.json"  # the layers the speed search kept float, for --resume
FLOAT_FALLBACK_DOC = ("never slower than float: time the int8 export against the float one in the predictor and keep "
                      "float the layer groups that measure faster in float (slimkit.quant.speed): `always` searches "
                      "every time, `if_slower` only when int8 is slower than float, `off` never (the stage still "
                      "reports both timings)")


@dataclasses.dataclass
class _Quantization(Strategy):
    """Options and measurement shared by QAT and PTQ."""

    quantizes = True
    traces = True

    weight_bits: int = option(8, "bits of the quantized weights", ge=2, le=16)
    activation_bits: int = option(8, "bits of the quantized activations (inputs of the quantized layers)",
                                  ge=2, le=16)
    weight_quantize_type: Literal["channel_wise_abs_max", "abs_max"] = option(
        "channel_wise_abs_max", "weight scales: one abs-max per output channel, or one per tensor")
    quantizable_layer_type: List[str] = option(
        default_factory=lambda: ["Conv2D", "Linear"],
        doc=f"layer types that get quantized ({', '.join(QUANTIZABLE_TYPES)}); depthwise convs are Conv2D")
    skip_layers: List[str] = option(default_factory=list, doc="layers kept float, by structured name as in "
                                    "model.named_sublayers(): a quantizable layer (`classifier.3`) or any layer "
                                    "holding some (`neck` keeps all of it float)")
    skip_types: List[str] = option(default_factory=list, doc="layers kept float, by class name: a quantizable "
                                   "type (`Linear`) or any layer class of the model (`Attention`): every "
                                   "quantizable layer that is or sits inside one")
    runtime: Literal["onednn_int8", "cpu"] = option(
        "onednn_int8", "Paddle Inference CPU runtime used to evaluate and time the export: oneDNN with its "
                       "int8 passes, or the plain CPU predictor (computes in float); on a GPU run the "
                       "predictor runs the GPU kernels instead")
    float_fallback: Literal["if_slower", "always", "off"] = option("always", FLOAT_FALLBACK_DOC)

    def check(self):
        check_layer_types(self.quantizable_layer_type)

    def preflight(self, model, input_shape, as_built=True):
        layers_to_quantize(model, self.quantizable_layer_type, self.skip_layers, self.skip_types)  # unknown names
        return []

    # --- running ------------------------------------------------------------------------
    def apply(self, model, ctx):
        with compat.session_guard():
            # Bad names fail before any work.
            layers_to_quantize(model, self.quantizable_layer_type, self.skip_layers, self.skip_types)
            flops, zero_types = count_flops(model, ctx.input_shape)
            # For measure(): the quantized layers count as zero FLOPs, so the float structure's numbers are reported.
            ctx.scratch.update(float_flops=flops, float_flops_zero_types=zero_types, float_params=count_params(model))
            quantized = self.quantize(model, ctx)
            float_prefix = export_float(model, ctx.out_dir / FLOAT_EXPORT_DIR, ctx.input_shape)
            kept = self._keep_float_where_slower(model, quantized, float_prefix, ctx)
            result = self.finish(keep_float(quantized, kept) if kept else quantized)
            export_quantized(result, ctx.out_dir / EXPORT_DIR, ctx.input_shape, self.weight_bits)
        return result

    def quantize(self, model, ctx):
        """Return the quantized copy of `model`, not converted yet (the subclass's algorithm)."""
        raise NotImplementedError

    def finish(self, quantized):
        """The stage's model from the quantized one (PTQ converts it; QAT keeps its fake-quant layers)."""
        return quantized

    def _options(self):
        return dict(layer_types=self.quantizable_layer_type, skip_layers=self.skip_layers, skip_types=self.skip_types,
                    weight_bits=self.weight_bits, activation_bits=self.activation_bits,
                    weight_quantize_type=self.weight_quantize_type)

    def _predictor(self, ctx):
        return lambda prefix: InferenceModel(prefix, self.runtime, threads=ctx.report.threads,
                                             tensorrt=ctx.report.tensorrt)

    def _keep_float_where_slower(self, model, quantized, float_prefix, ctx):
        """The layers to keep float so the int8 export is not slower than the float one (`speed`); noted."""
        ctx.scratch["kept_float"] = []
        if self.float_fallback == "off":
            return []
        if self.runtime != "onednn_int8" or devices.current().startswith("gpu") or ctx.report.tensorrt:
            ctx.note(f"float_fallback: not searched: the {self.runtime} runtime on {devices.current()} is not "
                     "oneDNN's int8 CPU path the search measures", "float_fallback")
            return []
        groups = candidate_groups(model, quantized_layer_names(quantized), ctx.input_shape)
        shape = [ctx.report.latency_batch, *ctx.input_shape[1:]]
        settings = (ctx.report.latency_warmup, ctx.report.latency_runs, ctx.report.latency_rounds)
        with tempfile.TemporaryDirectory(dir=ctx.out_dir) as tmp:
            timer = VariantTimer(quantized, float_prefix, Path(tmp), ctx.input_shape, shape, self._predictor(ctx),
                                 settings, self.weight_bits)
            decision = keep_float_search(groups, timer, self.float_fallback)
        ctx.scratch["kept_float"] = decision.kept_float
        ctx.metrics["kept_float"] = decision.kept_float
        ctx.note(f"float_fallback ({cpu_description()}): {decision.note()}", "float_fallback")
        return decision.kept_float

    # --- measuring the export -------------------------------------------------------------
    def measure(self, model, ctx, report):
        """Replace accuracy, size and latency by those of the exported files reloaded in Paddle Inference."""
        with compat.session_guard():
            self._measure_export(ctx, report)

    def _measure_export(self, ctx, report):
        shape = [ctx.report.latency_batch, *ctx.input_shape[1:]]
        precision = report_precision(ctx.report)
        predictor = self._predictor(ctx)  # on the run's device (the session's), like every stage's latency
        exported = predictor(ctx.out_dir / EXPORT_DIR / "model")
        reference = predictor(ctx.out_dir / FLOAT_EXPORT_DIR / "model")
        batches = ctx.engine.batches(ctx.report.eval_split, ctx.train.eval_batch_size)
        metrics = exported.evaluate_batches(batches, ctx.task.metric(), ctx.task.config.output)
        ops = exported.optimized_ops()
        verdict = int8_verdict(ops)
        # The int8 and float exports timed turn by turn, so their ratio holds on a busy machine.
        found = measure({"int8": exported.runner(shape), "float": reference.runner(shape)}, [("float", "int8")],
                        precision)
        latency, float_latency = found.timing("int8").median, found.timing("float").median
        speedup = found.ratio("float", "int8")
        size = exported_size(exported.prefix)
        float_size = exported_size(reference.prefix)
        extra = ctx.scratch
        report.extra.update(
            eager_top1=report.top1, eager_top5=report.top5,
            eager_latency_ms=report.extra.get("eager_latency_ms", report.latency_ms),
            export_dir=str(ctx.out_dir / EXPORT_DIR), runtime=self.runtime, cpu_execution=verdict,
            optimized_ops=ops, float_export_latency_ms=round(float_latency, 4),
            int8_speedup_vs_float_export=round(speedup.value, 3), int8_speedup_interval=speedup.to_dict(),
            float_export_bytes=float_size, size_vs_float_export=round(size / float_size, 3),
            quant_params=report.params - extra["float_params"])
        report.top1, report.top5 = metrics.get("top1"), metrics.get("top5")
        report.extra["eager_metrics"] = dict(report.metrics)
        report.metrics = {k: v for k, v in metrics.items() if k != "samples"}
        report.size_bytes = size
        report.latency_ms = latency
        report.latency_method = f"{exported.describe()}, input {list(shape)}; {precision.describe()}"
        report.flops, report.params = extra["float_flops"], extra["float_params"]
        report.drop_notes("flops_zero_types")
        accuracy = "top-1/top-5" if report.top1 is not None else ", ".join(report.metrics)
        report.add_note("FLOPs and params are those of the float structure (paddle.flops counts the quantized "
                        f"layers as zero); {accuracy}, size and latency are measured on the exported files "
                        f"reloaded with paddle.inference ({report.extra['export_dir']})", "export")
        # The float structure's zero-FLOPs types are those of the stage before: already noted there.
        report.extra["flops_zero_types"] = extra["float_flops_zero_types"]
        interesting = {k: v for k, v in ops.items() if k in ("quantize", "dequantize", "requantize",
                                                               "quantize_linear", "dequantize_linear")}
        faster = "faster" if speedup.low > 1 else "not faster" if speedup.high <= 1 else "not measurably faster"
        report.add_note(
            f"{exported.device.upper() if exported.on_gpu else 'CPU'} execution: {verdict} "
            f"({self.runtime}; quantize/dequantize ops after Paddle Inference's passes: "
            f"{interesting or 'none'}); the int8 export runs in {latency:.3f} ms vs {float_latency:.3f} ms for the "
            f"float export in the same predictor, {speedup.text(2, 'x')} as fast ({faster})", "int8_speed")

    # --- resume ---------------------------------------------------------------------------
    def save(self, model, folder, ctx):
        """The model's state, plus the layers the speed search kept float (`restore` rebuilds them float)."""
        super().save(model, folder, ctx)
        atomic_write_text(Path(folder) / KEPT_FLOAT_FILE, json.dumps({"kept_float": ctx.scratch.get("kept_float", [])}))

    def restore(self, model, folder, ctx):
        """Re-apply the quantization structure to `model` and load the saved state into it."""
        path = Path(folder) / KEPT_FLOAT_FILE
        kept = json.loads(path.read_text())["kept_float"] if path.is_file() else []
        with compat.session_guard():
            return load_into(self.structure(model, ctx, kept), folder)

    def structure(self, model, ctx, kept=()):
        """A quantized copy of `model` with the layers `apply` returns, `kept` float (values to be loaded)."""
        raise NotImplementedError


@dataclasses.dataclass
class QAT(_Quantization, type_name="qat"):
    """Quantization-aware training: fake-quant the chosen layers, train with the engine, export int8."""

    epochs: Optional[int] = option(None, "QAT epochs; null = train.epochs", ge=1)
    lr: Optional[float] = option(None, "peak learning rate; null = a tenth of train.lr "
                                       "(QAT fine-tunes an already trained model)", gt=0)
    activation_quantize_type: Literal["moving_average_abs_max"] = option(
        "moving_average_abs_max", "activation scales: moving average of the batch abs-max")
    moving_rate: float = option(0.9, "moving-average rate of the activation scales", ge=0, lt=1)
    # QAT is often chosen for low bit widths or for size: trading layers back to float is asked for, not default.
    float_fallback: Literal["if_slower", "always", "off"] = option("off", FLOAT_FALLBACK_DOC)

    @property
    def trains(self):
        return self.epochs is None or self.epochs > 0

    def quantize(self, model, ctx):
        quantized = self.structure(model, ctx)
        lr = self.lr if self.lr is not None else ctx.train.lr * 0.1
        history = ctx.engine.train(quantized, epochs=ctx.hyper("epochs", self.epochs), lr=lr, desc=ctx.stage_name)
        if history:
            ctx.metrics["train_loss"] = round(history[-1]["loss"], 5)
        quantized.eval()
        return quantized

    def structure(self, model, ctx, kept=()):
        quantized = quantize_for_training(model, activation_quantize_type=self.activation_quantize_type,
                                          moving_rate=self.moving_rate, input_shape=ctx.input_shape,
                                          **self._options())
        quantized = keep_float(quantized, kept) if kept else quantized
        quantized.eval()
        return quantized


@dataclasses.dataclass
class PTQ(_Quantization, type_name="ptq"):
    """Post-training quantization: calibrate activation ranges on a few batches, no training, export int8."""

    algo: str = option(
        "abs_max", "how activation ranges are chosen, a registered calibration method: abs_max (largest |x|), avg "
                   "(mean of the batch abs-max), moving_average_abs_max (moving average of it, `moving_rate`), hist "
                   "(the `percentile` of |x|), mse (smallest quantization error), kl (smallest KL divergence)")
    percentile: float = option(0.9999, "fraction of |x| values below the range `hist` chooses", gt=0, le=1)
    moving_rate: float = option(0.9, "moving-average rate of `moving_average_abs_max`", ge=0, lt=1)
    calibration_batches: int = option(10, "batches observed for calibration (inputs only: labels are not used)",
                                      gt=0)
    calibration_split: Literal["train", "val"] = option("train", "split the calibration batches come from "
                                                                 "(no augmentation)")
    batch_size: Optional[int] = option(None, "calibration batch size; null = train.batch_size", gt=0)

    def check(self):
        super().check()
        if not get_observer(self.algo).activations:
            raise ConfigError("algo", f"{self.algo!r} observes weights only", f"use one of {activation_methods()}")

    def quantize(self, model, ctx):
        observed = prepare_ptq(model, algo=self.algo, input_shape=ctx.input_shape, percentile=self.percentile,
                               moving_rate=self.moving_rate, **self._options())
        size = ctx.hyper("batch_size", self.batch_size)
        batches = ctx.engine.batches(self.calibration_split, size, shuffle=False, max_batches=self.calibration_batches)
        seen = calibrate(observed, batches, progress=ctx.train.progress, total=self.calibration_batches)
        if seen == 0:
            raise ConfigError("calibration_split", f"the {self.calibration_split} split gave no batch",
                              "use a split with samples")
        ctx.metrics["calibration_batches"] = seen
        return observed

    def finish(self, quantized):
        return convert(quantized)

    def structure(self, model, ctx, kept=()):
        # The calibrated values are loaded afterwards; one zero batch only gives every
        # observer a value so convert() can build its quantize/dequantize layers.
        observed = prepare_ptq(model, algo="abs_max", input_shape=ctx.input_shape, **self._options())
        calibrate(observed, [np.zeros([1, *ctx.input_shape[1:]], np.float32)], progress=False)
        return convert(keep_float(observed, kept) if kept else observed)
