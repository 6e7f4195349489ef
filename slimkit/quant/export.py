"""Export a QAT/PTQ model as int8 for Paddle Inference (the export itself lives in slimkit.deploy).

The predictor, the float export and the int8 file writer moved to
`slimkit.deploy.paddle_inference`; their names stay importable from here and from `slimkit.quant`.
"""

from ..deploy.paddle_inference import (  # noqa: F401
    INT8_OPS,
    MODEL_FILE,
    PARAMS_FILE,
    RUNTIMES,
    SIMULATED_OPS,
    InferenceModel,
    export_float,
    export_int8,
    exported_size,
    input_spec,
    int8_verdict,
    needs_convert,
)


def export_quantized(model, folder, input_shape, weight_bits=8):
    """Write `folder/model.pdmodel` + `model.pdiparams` (int weights) of a QAT/PTQ model; returns the prefix."""
    from .qat import convert

    converted = convert(model) if needs_convert(model) else model
    return export_int8(converted, folder, input_shape, weight_bits)
