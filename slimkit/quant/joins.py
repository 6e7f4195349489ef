"""Observers where branches join, so Paddle Inference runs residual convolutions in int8 too.

Observers on the inputs of Conv2D/Linear layers give a scale to every tensor a weighted
layer reads, but Paddle's oneDNN int8 pass (cpu_quantize_pass.cc) quantizes a convolution
fused with a residual add only when it also has scales for the residual tensor and for the
fused output ("Conv op with ResidualData input cannot be quantized without output scale").
In a ResNet the shortcut's downsample conv + BN output goes only to the add, and the last
block's output only to pooling: with input observers alone, 5 of resnet50's 53 convolutions
stayed float (oneDNN's verbose log of the predictor). So the quantized copy also observes

- the output of every BatchNorm or convolution layer that is an operand of an elementwise
  add of two activations (found on the traced program), and
- the input of every pooling layer.

Each observer is a `paddle.nn.quant.Stub` child of that layer, called by a forward hook,
so the layer's structured name and parameters stay as they were; `paddle.quantization`
turns the stubs into quantize/dequantize pairs like any other activation observer.
"""

import paddle
from paddle.nn.quant import Stub

OUTPUT_OBSERVER, INPUT_OBSERVER = "output_observer", "input_observer"
_ADDS = {"pd_op.add", "pd_op.add_"}
_PRODUCERS = {"pd_op.batch_norm", "pd_op.batch_norm_", "pd_op.conv2d", "pd_op.depthwise_conv2d"}
POOLING = (paddle.nn.AdaptiveAvgPool2D, paddle.nn.AdaptiveMaxPool2D, paddle.nn.AvgPool2D, paddle.nn.MaxPool2D)


def join_layers(model, input_shape):
    """Structured names of the BatchNorm/conv layers whose outputs are operands of activation adds."""
    from ..pruning.dependency import parameter_values, trace_program

    program, _ = trace_program(model, input_shape)
    owner = {p.name: prefix for prefix, layer in model.named_sublayers()
             for p in layer._parameters.values() if p is not None}
    params, found = parameter_values(program), []
    for op in program.global_block().ops:
        name = op.name()
        if name in _ADDS and not any(op.operand_source(i).id in params for i in range(op.num_operands())):
            for i in range(op.num_operands()):
                layer = _producing_layer(op.operand_source(i), params, owner)
                if layer is not None and layer not in found:
                    found.append(layer)
    return found


def _producing_layer(value, params, owner):
    op = value.get_defining_op()
    if op is None:
        return None
    if op.name() in _ADDS:  # a conv's bias add: the conv produced the activation
        operands = [op.operand_source(i) for i in range(op.num_operands())]
        if any(v.id in params for v in operands):
            inner = [v for v in operands if v.id not in params]
            return _producing_layer(inner[0], params, owner) if len(inner) == 1 else None
        return None
    if op.name() not in _PRODUCERS:
        return None
    for i in range(op.num_operands()):
        param = params.get(op.operand_source(i).id)
        if param in owner:
            return owner[param]
    return None


def _observe_output(layer, inputs, output):
    return getattr(layer, OUTPUT_OBSERVER)(output)


def _observe_input(layer, inputs):
    return (getattr(layer, INPUT_OBSERVER)(inputs[0]), *inputs[1:])


def observe_joins(model, input_shape):
    """Give `model` (a copy about to be quantized) the join observers; returns the Stubs' structured names."""
    from ..core.errors import ModelError

    layers = dict(model.named_sublayers())
    try:
        joins = join_layers(model, input_shape)
    except ModelError:
        joins = []  # a forward Paddle cannot trace is quantized as before: inputs of weighted layers only
    names = []
    for name in joins:
        layers[name].add_sublayer(OUTPUT_OBSERVER, Stub())
        layers[name].register_forward_post_hook(_observe_output)
        names.append(f"{name}.{OUTPUT_OBSERVER}")
    for name, layer in layers.items():
        if isinstance(layer, POOLING):
            layer.add_sublayer(INPUT_OBSERVER, Stub())
            layer.register_forward_pre_hook(_observe_input)
            names.append(f"{name}.{INPUT_OBSERVER}")
    return names
