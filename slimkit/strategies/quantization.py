"""Quantization stages: `qat` (quantization-aware training) and `ptq` (post-training quantization).

Both quantize a copy of the model with Paddle's `paddle.quantization` (plus PaddleSlim's
channel-wise weight quanter and calibration observers), export it for Paddle Inference
with int8 weights into the stage folder (`inference/`), and report what the exported
files do when reloaded: accuracy, size on disk, predictor latency, and whether the CPU
run uses int8 kernels or only simulates quantization.
"""

import dataclasses
from typing import List, Literal, Optional

import numpy as np
import paddle

from .. import compat
from ..core.errors import ConfigError
from ..core.schema import option
from ..deploy.paddle_inference import INFERENCE_DIR, InferenceModel, export_float, exported_size, int8_verdict
from ..deploy.stage_latency import FLOAT_EXPORT_DIR, report_precision
from ..report.timing import measure
from ..models.checkpoint import load_into
from ..quant.export import export_quantized
from ..quant.ptq import calibrate, prepare_ptq
from ..quant.qat import QUANTIZABLE_TYPES, check_layer_types, convert, layers_to_quantize, quantize_for_training
from ..report.measure import count_flops, count_params
from .base import Strategy

__all__ = ["QAT", "PTQ"]

EXPORT_DIR = INFERENCE_DIR


@dataclasses.dataclass
class _Quantization(Strategy):
    """Options and measurement shared by QAT and PTQ."""

    weight_bits: int = option(8, "bits of the quantized weights", ge=2, le=16)
    activation_bits: int = option(8, "bits of the quantized activations (inputs of the quantized layers)",
                                  ge=2, le=16)
    weight_quantize_type: Literal["channel_wise_abs_max", "abs_max"] = option(
        "channel_wise_abs_max", "weight scales: one abs-max per output channel, or one per tensor")
    quantizable_layer_type: List[str] = option(
        default_factory=lambda: ["Conv2D", "Linear"],
        doc=f"layer types that get quantized ({', '.join(QUANTIZABLE_TYPES)}); depthwise convs are Conv2D")
    skip: List[str] = option(default_factory=list, doc="structured names of layers to keep in float "
                                                       "(e.g. `classifier.3`, as in model.named_sublayers())")
    runtime: Literal["onednn_int8", "cpu"] = option(
        "onednn_int8", "Paddle Inference CPU runtime used to evaluate and time the export: oneDNN with its "
                       "int8 passes, or the plain CPU predictor (computes in float); on a GPU run the "
                       "predictor runs the GPU kernels instead")

    def check(self):
        check_layer_types(self.quantizable_layer_type)

    # --- running ------------------------------------------------------------------------
    def apply(self, model, ctx):
        with compat.session_guard():
            layers_to_quantize(model, self.quantizable_layer_type, self.skip)  # bad names fail before any work
            flops, zero_types = count_flops(model, ctx.input_shape)
            # For measure(): the quantized layers count as zero FLOPs, so the float structure's numbers are reported.
            ctx.scratch.update(float_flops=flops, float_flops_zero_types=zero_types, float_params=count_params(model))
            quantized = self.quantize(model, ctx)
            export_quantized(quantized, ctx.out_dir / EXPORT_DIR, ctx.input_shape, self.weight_bits)
            export_float(model, ctx.out_dir / FLOAT_EXPORT_DIR, ctx.input_shape)
        return quantized

    def quantize(self, model, ctx):
        """Return the quantized copy of `model` (the subclass's algorithm)."""
        raise NotImplementedError

    def _options(self):
        return dict(layer_types=self.quantizable_layer_type, skip=self.skip, weight_bits=self.weight_bits,
                    activation_bits=self.activation_bits, weight_quantize_type=self.weight_quantize_type)

    # --- measuring the export -------------------------------------------------------------
    def measure(self, model, ctx, report):
        """Replace accuracy, size and latency by those of the exported files reloaded in Paddle Inference."""
        with compat.session_guard():
            self._measure_export(ctx, report)

    def _measure_export(self, ctx, report):
        shape = [ctx.report.latency_batch, *ctx.input_shape[1:]]
        trt = ctx.report.tensorrt  # on the run's device (the session's), like every stage's latency
        exported = InferenceModel(ctx.out_dir / EXPORT_DIR / "model", self.runtime, tensorrt=trt)
        reference = InferenceModel(ctx.out_dir / FLOAT_EXPORT_DIR / "model", self.runtime, tensorrt=trt)
        batches = ctx.engine.batches(ctx.report.eval_split, ctx.train.eval_batch_size)
        metrics = exported.evaluate_batches(batches, ctx.task.metric(), ctx.task.config.output)
        ops = exported.optimized_ops()
        verdict = int8_verdict(ops)
        # The int8 and float exports timed turn by turn, so their ratio holds on a busy machine.
        precision = report_precision(ctx.report)
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
    def restore(self, model, folder, ctx):
        """Re-apply the quantization structure to `model` and load the saved state into it."""
        with compat.session_guard():
            return load_into(self.structure(model, ctx), folder)

    def structure(self, model, ctx):
        """A quantized copy of `model` with the layers `apply` returns (values to be loaded)."""
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

    def quantize(self, model, ctx):
        quantized = self.structure(model, ctx)
        lr = self.lr if self.lr is not None else ctx.train.lr * 0.1
        history = ctx.engine.train(quantized, epochs=ctx.hyper("epochs", self.epochs), lr=lr, desc=ctx.stage_name)
        if history:
            ctx.metrics["train_loss"] = round(history[-1]["loss"], 5)
        quantized.eval()
        return quantized

    def structure(self, model, ctx):
        quantized = quantize_for_training(model, activation_quantize_type=self.activation_quantize_type,
                                          moving_rate=self.moving_rate, input_shape=ctx.input_shape,
                                          **self._options())
        quantized.eval()
        return quantized


@dataclasses.dataclass
class PTQ(_Quantization, type_name="ptq"):
    """Post-training quantization: calibrate activation ranges on a few batches, no training, export int8."""

    algo: Literal["abs_max", "avg", "hist", "kl", "mse"] = option(
        "abs_max", "how activation ranges are chosen: abs_max (Paddle), avg, hist, kl, mse (PaddleSlim observers)")
    calibration_batches: int = option(10, "batches observed for calibration", gt=0)
    calibration_split: Literal["train", "val"] = option("train", "split the calibration batches come from "
                                                                 "(no augmentation)")
    batch_size: Optional[int] = option(None, "calibration batch size; null = train.batch_size", gt=0)

    def quantize(self, model, ctx):
        observed = prepare_ptq(model, algo=self.algo, input_shape=ctx.input_shape, **self._options())
        size = ctx.hyper("batch_size", self.batch_size)
        seen = calibrate(observed, ctx.engine.batches(self.calibration_split, size, shuffle=False,
                                                      max_batches=self.calibration_batches))
        if seen == 0:
            raise ConfigError("calibration_split", f"the {self.calibration_split} split gave no batch",
                              "use a split with samples")
        ctx.metrics["calibration_batches"] = seen
        return convert(observed)

    def structure(self, model, ctx):
        # The calibrated values are loaded afterwards; one zero batch only gives every
        # observer a value so convert() can build its quantize/dequantize layers.
        observed = prepare_ptq(model, algo="abs_max", input_shape=ctx.input_shape, **self._options())
        calibrate(observed, [(paddle.to_tensor(np.zeros([1, *ctx.input_shape[1:]], np.float32)), None)])
        return convert(observed)
