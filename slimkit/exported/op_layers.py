"""Translators of the ops that hold parameters: they become real layers of the imported model.

conv2d / depthwise_conv2d -> paddle.nn.Conv2D, conv2d_transpose -> Conv2DTranspose (each with
the bias add an exporter split off, when the add reads only that conv), matmul with a 2-D
parameter (+ bias add) -> Linear, batch_norm -> BatchNorm1D/2D/3D, layer_norm -> LayerNorm, and
a multiply and/or add of a parameter with one value per channel (or one value) -> `Affine`:
a batch norm folded into a conv stays a per-channel layer the channel tracer follows. Any
other op reading a parameter reads it from `self.params` (slimkit.exported.layers.Parameters).
"""

import numpy as np
import paddle

from .layers import Affine
from .translate import Unsupported, register_translator

_ZERO = paddle.nn.initializer.Constant(0.0)


def _attr():
    return paddle.ParamAttr(initializer=_ZERO)


def _set(param, values):
    param.set_value(np.asarray(values, dtype="float32").reshape(param.shape))


def _float32(ctx, *names):
    for name in names:
        if ctx.array(name).dtype != np.float32:
            raise Unsupported(f"parameter {name} is {ctx.array(name).dtype}; layers are rebuilt in float32 only")


def vector_axis(shape, target):
    """(axis, size) if a tensor of `shape` broadcast against `target` varies along one axis of it only.

    size 1 (axis None) for a one-value tensor; None if it varies along several axes or would
    enlarge `target`.
    """
    if shape is None or target is None or len(shape) > len(target):
        return None
    padded = [1] * (len(target) - len(shape)) + list(shape)
    varying = [i for i, d in enumerate(padded) if d != 1]
    if not varying:
        return None, 1
    if len(varying) > 1 or padded[varying[0]] <= 0:
        return None
    axis = varying[0]
    if target[axis] not in (padded[axis], -1):
        return None
    return axis, padded[axis]


def _bias_add(ctx, value, channels, axis):
    """The `add` that adds a parameter of `channels` values along `axis` to `value` (its only reader), or None."""
    use = ctx.only_user(value)
    if use is None or use[0].name not in ("add", "add_"):
        return None
    add, i = use
    view = ctx.param_view(add.inputs[1 - i])
    if view is None or add.outputs[0].shape != value.shape:
        return None
    name, shape = view
    found = vector_axis(shape, value.shape)
    if found is None or ctx.array(name).size != channels or (channels > 1 and found[0] != axis % len(value.shape)):
        return None
    ctx.consume(add)
    return add, name


def _data_format(attrs):
    """A conv's layout: its `data_format`, `AnyLayout` (what exports write when none was set) read as NCHW."""
    fmt = attrs.get("data_format", "NCHW")
    return "NCHW" if fmt == "AnyLayout" else fmt


def _padding(attrs):
    algorithm = attrs.get("padding_algorithm", "EXPLICIT")
    if algorithm in ("SAME", "VALID"):
        return algorithm
    return [int(p) for p in attrs.get("paddings", [0, 0])]


@register_translator(("conv2d", "depthwise_conv2d"))
def conv2d(op, ctx):
    x, w = op.inputs[0], op.inputs[1]
    attrs = op.attrs
    fmt = _data_format(attrs)
    groups, stride, dilation = int(attrs.get("groups", 1)), attrs["strides"], attrs["dilations"]
    padding = _padding(attrs)
    if w.param is None:  # a computed filter: the functional conv
        return ctx.assign(op.outputs[0], f"paddle.nn.functional.conv2d({ctx.tensor(x)}, {ctx.tensor(w)}, "
                                         f"stride={stride}, padding={padding!r}, dilation={dilation}, "
                                         f"groups={groups}, data_format={fmt!r})")
    weight = ctx.array(w.param)
    out_c, kernel = weight.shape[0], list(weight.shape[2:])
    found = _bias_add(ctx, op.outputs[0], out_c, 1 if fmt == "NCHW" else 3)
    bias = found[1] if found else None
    _float32(ctx, w.param, *([bias] if bias else []))

    def make():
        layer = paddle.nn.Conv2D(weight.shape[1] * groups, out_c, kernel, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups, data_format=fmt, weight_attr=_attr(),
                                 bias_attr=_attr() if bias else False)
        _set(layer.weight, weight)
        if bias:
            _set(layer.bias, ctx.array(bias))
        return layer

    key = ("conv2d", stride, str(padding), dilation, groups, fmt, bias)
    call = ctx.layer(w.param, make, key, params=[bias] if bias else [])
    ctx.assign(found[0].outputs[0] if found else op.outputs[0], f"{call}({ctx.tensor(x)})")


@register_translator(("conv2d_transpose", "depthwise_conv2d_transpose"))
def conv2d_transpose(op, ctx):
    x, w = op.inputs[0], op.inputs[1]
    attrs = op.attrs
    fmt = _data_format(attrs)
    if w.param is None:
        raise Unsupported("its filter is computed, not a parameter")
    weight = ctx.array(w.param)
    groups = int(attrs.get("groups", 1))
    in_c, out_c, kernel = weight.shape[0], weight.shape[1] * groups, list(weight.shape[2:])
    size = ctx.const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] is not None else []
    if size is None:
        size_arg = f", output_size={ctx.arg(op.inputs[2])}"
    else:
        size_arg = f", output_size={list(size)}" if size else ""
    found = _bias_add(ctx, op.outputs[0], out_c, 1 if fmt == "NCHW" else 3)
    bias = found[1] if found else None
    _float32(ctx, w.param, *([bias] if bias else []))
    output_padding = list(attrs.get("output_padding") or []) or 0

    def make():
        layer = paddle.nn.Conv2DTranspose(in_c, out_c, kernel, stride=attrs["strides"], padding=_padding(attrs),
                                          output_padding=output_padding, groups=groups,
                                          dilation=attrs["dilations"], data_format=fmt, weight_attr=_attr(),
                                          bias_attr=_attr() if bias else False)
        _set(layer.weight, weight)
        if bias:
            _set(layer.bias, ctx.array(bias))
        return layer

    key = ("conv2d_transpose", attrs["strides"], str(_padding(attrs)), str(output_padding), groups, fmt, bias)
    call = ctx.layer(w.param, make, key, params=[bias] if bias else [])
    ctx.assign(found[0].outputs[0] if found else op.outputs[0], f"{call}({ctx.tensor(x)}{size_arg})")


@register_translator("matmul")
def matmul(op, ctx):
    x, y = op.inputs
    tx, ty = bool(op.attrs.get("transpose_x", False)), bool(op.attrs.get("transpose_y", False))
    if y.param is None or y.rank != 2 or tx or x.param is not None or ctx.param_view(x) is not None:
        if not (tx or ty):
            return ctx.assign(op.outputs[0], f"{ctx.tensor(x)} @ {ctx.tensor(y)}")
        return ctx.assign(op.outputs[0], f"any_ir.matmul({ctx.tensor(x)}, {ctx.tensor(y)}, transpose_x={tx}, "
                                         f"transpose_y={ty})")
    weight = ctx.array(y.param).T if ty else ctx.array(y.param)
    found = _bias_add(ctx, op.outputs[0], weight.shape[1], -1)
    bias = found[1] if found else None
    _float32(ctx, y.param, *([bias] if bias else []))

    def make():
        layer = paddle.nn.Linear(weight.shape[0], weight.shape[1], weight_attr=_attr(),
                                 bias_attr=_attr() if bias else False)
        _set(layer.weight, weight)
        if bias:
            _set(layer.bias, ctx.array(bias))
        return layer

    call = ctx.layer(y.param, make, ("linear", ty, bias), params=[bias] if bias else [])
    ctx.assign(found[0].outputs[0] if found else op.outputs[0], f"{call}({ctx.tensor(x)})")


def _only_first_result_used(op, ctx, what):
    if any(out is not None and any(user.index in ctx.live for user, _ in out.users) for out in op.outputs[1:]):
        raise Unsupported(f"the program reads the {what} it computes besides its output")


_BN_CLASSES = {2: ("BatchNorm1D", "NC", "NC"), 3: ("BatchNorm1D", "NCL", "NLC"),
               4: ("BatchNorm2D", "NCHW", "NHWC"), 5: ("BatchNorm3D", "NCDHW", "NDHWC")}


@register_translator(("batch_norm", "batch_norm_"))
def batch_norm(op, ctx):
    x, mean, var, scale, shift = (list(op.inputs) + [None] * 5)[:5]
    if mean is None or var is None or mean.param is None or var.param is None or x.rank not in _BN_CLASSES:
        raise Unsupported("its statistics are not parameters, or its input is not 2-D to 5-D")
    for v in (scale, shift):
        if v is not None and v.param is None:
            raise Unsupported("its scale or shift is computed, not a parameter")
    _only_first_result_used(op, ctx, "batch statistics")
    cls, first, last = _BN_CLASSES[x.rank]
    fmt = last if op.attrs.get("data_format", "NCHW") in ("NHWC", "NLC", "NDHWC") else first
    channels = ctx.array(mean.param).size
    _float32(ctx, mean.param, var.param, *[v.param for v in (scale, shift) if v is not None])

    def make():
        # Eval mode uses the running statistics, as the exported program does; training updates them,
        # as the original's training did (the program's is_test/use_global_stats only record eval mode).
        layer = getattr(paddle.nn, cls)(channels, momentum=float(op.attrs.get("momentum", 0.9)),
                                        epsilon=float(op.attrs.get("epsilon", 1e-5)),
                                        weight_attr=_attr() if scale is not None else False,
                                        bias_attr=_attr() if shift is not None else False, data_format=fmt)
        _set(layer._mean, ctx.array(mean.param))
        _set(layer._variance, ctx.array(var.param))
        if scale is not None:
            _set(layer.weight, ctx.array(scale.param))
        if shift is not None:
            _set(layer.bias, ctx.array(shift.param))
        return layer

    others = [v.param for v in (var, scale, shift) if v is not None]
    call = ctx.layer(mean.param, make, ("batch_norm", cls, fmt), params=others)
    ctx.assign(op.outputs[0], f"{call}({ctx.tensor(x)})")


@register_translator("layer_norm")
def layer_norm(op, ctx):
    x, scale, shift = (list(op.inputs) + [None] * 3)[:3]
    begin = int(op.attrs.get("begin_norm_axis", 1)) % max(1, x.rank)
    shape = list(x.shape[begin:])
    if any(d <= 0 for d in shape) or any(v is not None and v.param is None for v in (scale, shift)):
        raise Unsupported("it normalizes over dynamic sizes, or its scale or shift is computed")
    _only_first_result_used(op, ctx, "mean and variance")
    params = [v.param for v in (scale, shift) if v is not None]
    _float32(ctx, *params)

    def make():
        layer = paddle.nn.LayerNorm(shape, epsilon=float(op.attrs.get("epsilon", 1e-5)),
                                    weight_attr=_attr() if scale is not None else False,
                                    bias_attr=_attr() if shift is not None else False)
        if scale is not None:
            _set(layer.weight, ctx.array(scale.param))
        if shift is not None:
            _set(layer.bias, ctx.array(shift.param))
        return layer

    if not params:
        return ctx.assign(op.outputs[0], f"paddle.nn.functional.layer_norm({ctx.tensor(x)}, {shape}, "
                                         f"epsilon={float(op.attrs.get('epsilon', 1e-5))!r})")
    call = ctx.layer(params[0], make, ("layer_norm", tuple(shape)), params=params[1:])
    ctx.assign(op.outputs[0], f"{call}({ctx.tensor(x)})")


# ---- multiply / add of a per-channel (or one-value) parameter: Affine ---------------------------

def _vector_operand(op, ctx):
    """(tensor operand, parameter name, axis) if one operand is a parameter varying along one axis of the other."""
    if op.index in ctx.lazy:
        return None
    for i in (0, 1):
        tensor, other = op.inputs[i], op.inputs[1 - i]
        view = ctx.param_view(other)
        if view is None or ctx.param_view(tensor) is not None or tensor.shape != op.outputs[0].shape:
            continue
        found = vector_axis(view[1], tensor.shape)
        if found is not None:
            return tensor, view[0], found[0]
    return None


def _view(axis, rank):
    """The reshape that places 1-D weights on `axis` of a rank-`rank` tensor (None: they broadcast as they are)."""
    if axis is None or axis == rank - 1:
        return None
    return [-1 if i == axis else 1 for i in range(rank)]


def _affine(ctx, name_param, tensor, out, weight=None, bias=None, axis=None):
    _float32(ctx, *[p for p in (weight, bias) if p])
    view = _view(axis, tensor.rank)

    def make():
        layer = Affine(ctx.array(weight) if weight else None, ctx.array(bias) if bias else None, view)
        for param, name in ((layer.weight, weight), (layer.bias, bias)):
            if param is not None:
                param.stop_gradient = not ctx.trainable(name)
        return layer

    others = [p for p in (weight, bias) if p and p != name_param]
    call = ctx.layer(name_param, make, ("affine", str(view), weight, bias), params=others)
    ctx.assign(out, f"{call}({ctx.tensor(tensor)})")


@register_translator(("multiply", "multiply_"))
def multiply(op, ctx):
    found = _vector_operand(op, ctx)
    if found is None:
        return elementwise(op, ctx)
    tensor, weight, axis = found
    bias, out = None, op.outputs[0]
    use = ctx.only_user(out)
    if use is not None and use[0].name in ("add", "add_"):
        after = _vector_operand(use[0], ctx)
        if after is not None and after[0] is out and (after[2] is None or axis is None or after[2] == axis):
            bias, out = after[1], use[0].outputs[0]
            axis = axis if axis is not None else after[2]
            ctx.consume(use[0])
    _affine(ctx, weight, tensor, out, weight=weight, bias=bias, axis=axis)


@register_translator(("add", "add_"))
def add(op, ctx):
    found = _vector_operand(op, ctx)
    if found is None:
        return elementwise(op, ctx)
    tensor, bias, axis = found
    _affine(ctx, bias, tensor, op.outputs[0], bias=bias, axis=axis)


_OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}
_FUNCTIONS = {"maximum": "any_ir.maximum", "minimum": "any_ir.minimum", "elementwise_pow": "paddle.pow",
              "floor_divide": "paddle.floor_divide", "remainder": "paddle.remainder", "fmax": "paddle.fmax",
              "fmin": "paddle.fmin", "greater_than": "any_ir.greater_than", "less_than": "paddle.less_than",
              "greater_equal": "paddle.greater_equal", "less_equal": "paddle.less_equal", "equal": "paddle.equal",
              "not_equal": "paddle.not_equal", "logical_and": "any_ir.logical_and",
              "logical_or": "any_ir.logical_or"}


@register_translator(["subtract", "subtract_", "divide", "divide_", *_FUNCTIONS])
def elementwise(op, ctx):
    kind = op.name.rstrip("_")
    a, b = (ctx.tensor(v) for v in op.inputs[:2])
    code = f"{a} {_OPERATORS[kind]} {b}" if kind in _OPERATORS else f"{_FUNCTIONS[kind]}({a}, {b})"
    ctx.assign(op.outputs[0], code)
