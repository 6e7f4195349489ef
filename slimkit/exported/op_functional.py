"""Translators of the ops without parameters: each becomes one call of paddle's public API.

Only public functions (`paddle.*`, `paddle.nn.functional.*`) are written: the rebuilt forward
runs eagerly, traces into PIR (the channel tracer, `paddle.jit.save`) and into the legacy
program IR (slimkit's Paddle Inference export), which `paddle._C_ops` calls would not. The
public functions Paddle 3.3 binds to `_C_ops` (paddle.matmul, paddle.exp, F.sigmoid, ...) are
called through `slimkit.compat.any_ir`, which appends the legacy op under the legacy IR.
"""

from .translate import Unsupported, literal, register_translator

F = "paddle.nn.functional"


# ---- constants, lists, aliases --------------------------------------------------------------------

@register_translator("full")
def full(op, ctx):
    a = op.attrs
    ctx.assign(op.outputs[0], f"paddle.full({list(a.get('shape', [1]))}, {ctx.arg(op.outputs[0])}, "
                              f"dtype={a.get('dtype', 'float32')!r})")


@register_translator("full_int_array")
def full_int_array(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.to_tensor({literal(ctx.const(op.outputs[0]))}, "
                              f"dtype={op.attrs.get('dtype', 'int64')!r})")


@register_translator("full_like")
def full_like(op, ctx):
    value = ctx.const(op.inputs[1])
    if value is None:
        raise Unsupported("its fill value is computed")
    ctx.assign(op.outputs[0], f"paddle.full_like({ctx.tensor(op.inputs[0])}, {literal(value)}, "
                              f"dtype={op.attrs.get('dtype', 'float32')!r})")


@register_translator("builtin.combine")
def combine(op, ctx):
    ctx.bind(op.outputs[0], "[" + ", ".join(ctx.tensor(v) for v in op.inputs) + "]")


@register_translator("builtin.split")
def unpack(op, ctx):
    ctx.assign(list(op.outputs), ctx.tensor(op.inputs[0]))


@register_translator(("assign", "assign_out_", "contiguous"))
def identity(op, ctx):
    ctx.bind(op.outputs[0], ctx.tensor(op.inputs[0]))


@register_translator(("cast", "cast_"))
def cast(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.cast({ctx.tensor(op.inputs[0])}, {op.attrs['dtype']!r})")


# ---- elementwise functions of one tensor ------------------------------------------------------

# op -> (function, {attribute: keyword})
_UNARY = {
    "relu": (f"{F}.relu", {}), "relu6": (f"{F}.relu6", {}), "sigmoid": ("any_ir.sigmoid", {}),
    "tanh": ("any_ir.tanh", {}), "hardswish": (f"{F}.hardswish", {}), "swish": (f"{F}.swish", {}),
    "silu": (f"{F}.silu", {}), "mish": (f"{F}.mish", {}), "gelu": ("any_ir.gelu", {"approximate": "approximate"}),
    "leaky_relu": (f"{F}.leaky_relu", {"negative_slope": "negative_slope"}),
    "hardsigmoid": (f"{F}.hardsigmoid", {"slope": "slope", "offset": "offset"}),
    "elu": (f"{F}.elu", {"alpha": "alpha"}), "celu": (f"{F}.celu", {"alpha": "alpha"}),
    "selu": (f"{F}.selu", {"scale": "scale", "alpha": "alpha"}),
    "softplus": ("any_ir.softplus", {"beta": "beta", "threshold": "threshold"}),
    "hardtanh": (f"{F}.hardtanh", {"t_min": "min", "t_max": "max"}),
    "softmax": (f"{F}.softmax", {"axis": "axis"}), "log_softmax": (f"{F}.log_softmax", {"axis": "axis"}),
    "exp": ("any_ir.exp", {}), "sqrt": ("any_ir.sqrt", {}), "rsqrt": ("any_ir.rsqrt", {}),
    "abs": ("any_ir.abs", {}), "square": ("paddle.square", {}), "erf": ("paddle.erf", {}),
    "log": ("any_ir.log", {}), "floor": ("any_ir.floor", {}), "ceil": ("any_ir.ceil", {}),
    "sign": ("any_ir.sign", {}), "reciprocal": ("paddle.reciprocal", {}), "sin": ("any_ir.sin", {}),
    "cos": ("any_ir.cos", {}), "logical_not": ("any_ir.logical_not", {}), "pow": ("paddle.pow", {"y": "y"}),
}


@register_translator([*_UNARY, *(f"{name}_" for name in _UNARY)])
def unary(op, ctx):
    function, keywords = _UNARY[op.name.rstrip("_")]
    args = [ctx.tensor(op.inputs[0])] + [f"{kw}={literal(op.attrs[attr])}" for attr, kw in keywords.items()
                                          if attr in op.attrs]
    ctx.assign(op.outputs[0], f"{function}({', '.join(args)})")


@register_translator(("scale", "scale_"))
def scale(op, ctx):
    factor = ctx.arg(op.inputs[1]) if len(op.inputs) > 1 and op.inputs[1] is not None else \
        literal(float(op.attrs.get("scale", 1.0)))
    ctx.assign(op.outputs[0], f"paddle.scale({ctx.tensor(op.inputs[0])}, scale={factor}, "
                              f"bias={literal(float(op.attrs.get('bias', 0.0)))}, "
                              f"bias_after_scale={bool(op.attrs.get('bias_after_scale', True))})")


@register_translator(("clip", "clip_"))
def clip(op, ctx):
    low, high = (ctx.arg(v) for v in op.inputs[1:3])
    ctx.assign(op.outputs[0], f"paddle.clip({ctx.tensor(op.inputs[0])}, min={low}, max={high})")


@register_translator("dropout")
def dropout(op, ctx):
    # Active in training as in the original's training; the export (eval mode) has none.
    p = ctx.const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] is not None else op.attrs.get("p", 0.5)
    if p is None:
        raise Unsupported("its probability is computed")
    mode = op.attrs.get("mode", "upscale_in_train")
    mode = "downscale_in_infer" if mode == "downgrade_in_infer" else mode  # the op's name for the API's mode
    ctx.assign(op.outputs[0], f"{F}.dropout({ctx.tensor(op.inputs[0])}, p={literal(float(p))}, "
                              f"training=self.training, mode={mode!r})")


# ---- shapes and layout ----------------------------------------------------------------------------

@register_translator(("reshape", "reshape_"))
def reshape(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.reshape({ctx.tensor(op.inputs[0])}, {ctx.arg(op.inputs[1])})")


@register_translator(("flatten", "flatten_"))
def flatten(op, ctx):
    a = op.attrs
    ctx.assign(op.outputs[0], f"paddle.flatten({ctx.tensor(op.inputs[0])}, start_axis={a.get('start_axis', 1)}, "
                              f"stop_axis={a.get('stop_axis', -1)})")


@register_translator(("squeeze", "squeeze_", "unsqueeze", "unsqueeze_"))
def squeeze(op, ctx):
    function = "paddle.unsqueeze" if op.name.startswith("unsqueeze") else "paddle.squeeze"
    axis = ctx.arg(op.inputs[1]) if len(op.inputs) > 1 and op.inputs[1] is not None else "None"
    ctx.assign(op.outputs[0], f"{function}({ctx.tensor(op.inputs[0])}, axis={axis})")


@register_translator(("transpose", "transpose_"))
def transpose(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.transpose({ctx.tensor(op.inputs[0])}, {list(op.attrs['perm'])})")


@register_translator(("shape", "shape64"))
def shape(op, ctx):
    # paddle.shape is int64 in PIR and int32 in the legacy IR: the program's own dtype, in both.
    ctx.assign(op.outputs[0], f"paddle.cast(paddle.shape({ctx.tensor(op.inputs[0])}), {op.outputs[0].dtype!r})")


@register_translator("slice")
def slice_(op, ctx):
    x = op.inputs[0]
    axes, drop = list(op.attrs["axes"]), list(op.attrs.get("decrease_axis") or [])
    code = f"paddle.slice({ctx.tensor(x)}, {axes}, {ctx.arg(op.inputs[1])}, {ctx.arg(op.inputs[2])})"
    if drop and op.outputs[0].rank < x.rank:  # the legacy IR keeps a 1-D result where PIR drops the axis
        code = f"paddle.squeeze({code}, axis={drop})"
    ctx.assign(op.outputs[0], code)


@register_translator("concat")
def concat(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.concat([{', '.join(ctx.items(op.inputs[0]))}], axis={ctx.arg(op.inputs[1])})")


@register_translator("stack")
def stack(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.stack([{', '.join(ctx.items(op.inputs[0]))}], "
                              f"axis={op.attrs.get('axis', 0)})")


@register_translator("split")
def split(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.split({ctx.tensor(op.inputs[0])}, {ctx.arg(op.inputs[1])}, "
                              f"axis={ctx.arg(op.inputs[2])})")


@register_translator("split_with_num")
def split_with_num(op, ctx):
    ctx.assign(op.outputs[0], f"paddle.split({ctx.tensor(op.inputs[0])}, {int(op.attrs['num'])}, "
                              f"axis={ctx.arg(op.inputs[1])})")


@register_translator(("expand", "tile"))
def expand(op, ctx):
    function = "paddle.expand" if op.name == "expand" else "paddle.tile"
    ctx.assign(op.outputs[0], f"{function}({ctx.tensor(op.inputs[0])}, {ctx.arg(op.inputs[1])})")


@register_translator("gather")
def gather(op, ctx):
    axis = ctx.arg(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] is not None else op.attrs.get("axis", 0)
    ctx.assign(op.outputs[0], f"paddle.gather({ctx.tensor(op.inputs[0])}, {ctx.tensor(op.inputs[1])}, axis={axis})")


@register_translator(("mean", "sum", "max", "min", "amax", "amin"))
def reduce(op, ctx):
    axis = ctx.arg(op.inputs[1]) if len(op.inputs) > 1 and op.inputs[1] is not None else \
        literal(list(op.attrs.get("axis", [])))
    function = f"any_ir.{op.name}" if op.name in ("sum", "amax", "amin") else f"paddle.{op.name}"
    ctx.assign(op.outputs[0], f"{function}({ctx.tensor(op.inputs[0])}, axis={axis}, "
                              f"keepdim={bool(op.attrs.get('keepdim', False))})")


# ---- pooling, resizing, padding -------------------------------------------------------------------

def _pool_padding(attrs):
    algorithm = attrs.get("padding_algorithm", "EXPLICIT")
    if algorithm in ("SAME", "VALID"):
        return repr(algorithm)
    return literal([int(p) for p in attrs.get("paddings", [0, 0])])


@register_translator("pool2d")
def pool2d(op, ctx):
    a, x = op.attrs, ctx.tensor(op.inputs[0])
    kind = a.get("pooling_type", "max")
    kernel = ctx.const(op.inputs[1])
    fmt = a.get("data_format", "NCHW")
    if kernel is None:
        raise Unsupported("its kernel size is computed")
    if a.get("global_pooling") or a.get("adaptive"):
        size = 1 if a.get("global_pooling") else kernel
        return ctx.assign(op.outputs[0], f"{F}.adaptive_{kind}_pool2d({x}, {literal(size)}, data_format={fmt!r})")
    common = f"{literal(kernel)}, stride={literal(list(a['strides']))}, padding={_pool_padding(a)}, " \
             f"ceil_mode={bool(a.get('ceil_mode', False))}"
    if kind == "avg":
        code = f"{F}.avg_pool2d({x}, {common}, exclusive={bool(a.get('exclusive', True))}, data_format={fmt!r})"
    else:
        code = f"{F}.max_pool2d({x}, {common}, data_format={fmt!r})"
    ctx.assign(op.outputs[0], code)


@register_translator(("nearest_interp", "bilinear_interp", "bicubic_interp", "linear_interp", "trilinear_interp"))
def interpolate(op, ctx):
    a = op.attrs
    x, out_size, size_list, scale_tensor = (list(op.inputs) + [None] * 4)[:4]
    sizes = [int(a.get(k, -1)) for k in ("out_d", "out_h", "out_w")]
    sizes = [s for s in sizes[3 - (x.rank - 2):] if s > 0]
    if out_size is not None:
        size = ctx.arg(out_size)
    elif size_list is not None:
        size = "[" + ", ".join(ctx.items(size_list)) + "]"
    else:
        size = literal(sizes) if len(sizes) == x.rank - 2 else "None"
    scale = ctx.arg(scale_tensor) if scale_tensor is not None else (
        literal([float(s) for s in a.get("scale", [])]) if a.get("scale") and size == "None" else "None")
    ctx.assign(op.outputs[0], f"compat.interpolate({ctx.tensor(x)}, size={size}, scale_factor={scale}, "
                              f"mode={a.get('interp_method', 'nearest')!r}, "
                              f"align_corners={bool(a.get('align_corners', False))}, "
                              f"align_mode={int(a.get('align_mode', 1))}, "
                              f"data_format={a.get('data_format', 'NCHW')!r})")


@register_translator("pad3d")
def pad3d(op, ctx):
    a = op.attrs
    ctx.assign(op.outputs[0], f"{F}.pad({ctx.tensor(op.inputs[0])}, {ctx.arg(op.inputs[1])}, "
                              f"mode={a.get('mode', 'constant')!r}, value={literal(float(a.get('pad_value', 0.0)))}, "
                              f"data_format={a.get('data_format', 'NCDHW')!r})")
