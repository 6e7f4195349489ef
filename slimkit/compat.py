"""Every workaround slimkit needs to run PaddleSlim 2.6 on Paddle 3.3, in one place.

Each patch is small, says why it exists, and has a test in tests/test_compat.py that
fails if the patch stops working or stops being needed. `import slimkit` patches
nothing: numpy and paddle stay exactly as they were. slimkit itself uses PaddleSlim only
for quantization observers and quanters (`import_paddleslim()`, no patches needed);
PaddleSlim's own pruners, which slimkit does not call (the comparison benchmark does),
need aliases in numpy and paddle and a scoped legacy IR around their graph trace: those
are applied by `import_paddleslim_pruners()` only.

The user's Paddle session stays as it was: PIR on and dynamic mode on, before and
after every call here, even when the call fails.
"""

import contextlib
import functools
import inspect
import sys
import warnings
from pathlib import Path

import numpy as np

from .core import paddle_build


@contextlib.contextmanager
def _without_cv2():
    # paddleslim pins opencv-python 4.6, built for numpy 1; its import chain reaches
    # paddle.dataset.image, which tries cv2 and, under numpy 2, prints a numpy ABI error.
    # Nothing slimkit uses needs cv2, so the attempt is made to fail quietly.
    if "cv2" in sys.modules:
        yield
        return
    sys.modules["cv2"] = None
    try:
        yield
    finally:
        if sys.modules.get("cv2", 0) is None:
            del sys.modules["cv2"]


with _without_cv2(), warnings.catch_warnings():
    # paddle warns at import that ccache (a C++ build cache) is missing; slimkit builds no extensions.
    warnings.filterwarnings("ignore", message="No ccache found")
    try:
        import paddle
    except ImportError as err:
        raise paddle_build.missing(err) from None
    paddle_build.check_version(paddle)

# What the patches found, so the tests can tell "still needed" from "no longer needed".
FOUND = {}


def apply_pruner_aliases():
    """numpy/paddle aliases PaddleSlim's pruners call (applied by `import_paddleslim_pruners` only)."""
    # numpy 2.0 removed np.product; paddleslim still calls it (fpgm, unstructured, flops).
    FOUND.setdefault("np_product_missing", not hasattr(np, "product"))
    if not hasattr(np, "product"):
        np.product = np.prod

    # Paddle 3.x renamed the guard paddleslim's graph trace enters.
    base = paddle.base.dygraph.base
    FOUND.setdefault("old_guard_missing", not hasattr(base, "_to_static_mode_guard_"))
    if not hasattr(base, "_to_static_mode_guard_"):
        base._to_static_mode_guard_ = base.to_static_mode_guard


def pir_enabled():
    return bool(paddle.framework.get_flags("FLAGS_enable_pir_api")["FLAGS_enable_pir_api"])


@contextlib.contextmanager
def session_guard():
    """Restore the PIR flag and dynamic mode on exit, whatever happened inside; traces inside start clean."""
    was_dynamic = paddle.in_dynamic_mode()
    was_pir = pir_enabled()
    names = _current_unique_names()
    try:
        with _fresh_trace_records():
            yield
    finally:
        # Switching dygraph mode off and on enters a fresh unique-name scope: parameters
        # created afterwards (e.g. by channel removal) would be named create_parameter_0.w_0
        # again, and an export holding two tensors of one name runs the wrong weights.
        from paddle.base import unique_name

        unique_name.switch(*names)
        if pir_enabled() != was_pir:
            paddle.framework.set_flags({"FLAGS_enable_pir_api": was_pir})
            if was_pir:
                paddle.pir_utils._switch_to_pir_()
            else:
                paddle.pir_utils._switch_to_old_ir_()
        if was_dynamic and not paddle.in_dynamic_mode():
            paddle.disable_static()
        elif not was_dynamic and paddle.in_dynamic_mode():
            paddle.enable_static()


def _trace_recorders():
    """Paddle's dy2static records of the parameters each traced program reads (legacy IR and PIR)."""
    from paddle.jit.dy2static import parameter_recorder
    from paddle.jit.dy2static.program_translator import ProgramTranslator

    translator = ProgramTranslator.get_instance()
    found = [getattr(translator, "_params_recorder", None), getattr(translator, "_inplace_map", None),
             getattr(parameter_recorder, "_global_parameter_recorder", None),
             getattr(parameter_recorder, "_global_inplace_map", None)]
    return [r for r in found if r is not None]


_RECORD_FIELDS = ("params_dict", "tensor2value")


@contextlib.contextmanager
def _fresh_trace_records():
    """Inside, the dy2static parameter records start empty; the user's come back after.

    They are keyed by `id(program)` and an entry goes only when its trace finishes: a trace
    that raised leaves its parameters behind, and a later program Python gives the same id
    inherits them, so `paddle.jit.save` fails with a KeyError naming some other model's weight.
    """
    saved = [(r, field, getattr(r, field)) for r in _trace_recorders() for field in _RECORD_FIELDS
             if isinstance(getattr(r, field, None), dict)]
    for recorder, field, _ in saved:
        setattr(recorder, field, {})
    try:
        yield
    finally:
        for recorder, field, records in saved:
            setattr(recorder, field, records)


def _current_unique_names():
    from paddle.base import unique_name

    state = unique_name.switch()  # the only way to read the current generator is to swap it out
    unique_name.switch(*state)
    return state


@contextlib.contextmanager
def legacy_ir():
    """Run the body under Paddle's legacy program IR, scoped.

    PaddleSlim's graph trace reads `Operator.input_arg_names`, which PIR operations do
    not have, and a quantized `paddle.jit.save` only exports under the legacy IR; the
    functions Paddle binds to PIR-only calls (`LEGACY_FUNCTIONS`) work inside too. The
    process-wide alternative (FLAGS_enable_pir_api=0 before import) would change the
    user's whole session, so slimkit switches only for the call.
    """
    with session_guard(), paddle.pir_utils.OldIrGuard(), _legacy_functions():
        yield


@contextlib.contextmanager
def stable_export_names(model):
    """Inside, `model`'s weights are named after their state-dict keys and new names count from 0.

    `paddle.jit.save` writes every weight's process-wide unique name (`conv2d_3.w_0`, and
    `..._deepcopy_12` for a copy) and every temporary's into the `.pdmodel`: the same model
    exported by a process that built other layers first gave other bytes. Names that depend
    only on the model make the export the same in every process; the old names come back after.
    """
    import paddle

    tensors = list(model.state_dict().values())
    names = [t.name for t in tensors]
    try:
        for key, tensor in model.state_dict().items():
            tensor.name = f"slimkit.{key}"
        with paddle.utils.unique_name.guard():
            yield
    finally:
        for tensor, name in zip(tensors, names):
            tensor.name = name


def strip_callstacks(pdmodel):
    """Rewrite a saved legacy `.pdmodel` without the Python call stacks its feed and fetch ops carry.

    `paddle.jit.save` records the Python stack of every op it adds itself (file names and
    line numbers of the caller): the same model saved from another script gave other
    bytes. The stacks are debugging information; the program is the same without them.
    Call under `legacy_ir()`.
    """
    import paddle

    path = Path(pdmodel)
    program = paddle.static.Program.parse_from_string(path.read_bytes())
    for block in program.blocks:
        for op in block.ops:
            if op.desc.has_attr("op_callstack"):
                op.desc._set_attr("op_callstack", [])
    path.write_bytes(program.desc.serialize_to_string())
# Paddle 3.3 binds these public functions (paddle.matmul, Tensor.matmul, F.gelu, F.sigmoid, nn.GELU,
# nn.Tanh, ...) straight to `paddle._C_ops` calls, which take only dygraph tensors and PIR values:
# under the legacy IR they fail ("argument (position 1) must be Value, but got Variable"), so a
# model calling them could not be exported. name -> (legacy op, tensor inputs, attributes), the
# arguments in `_C_ops` order; inside legacy_ir() each appends its legacy op to the program.
LEGACY_FUNCTIONS = {
    "matmul": ("matmul_v2", ("X", "Y"), ("trans_x", "trans_y")),
    "bmm": ("bmm", ("X", "Y"), ()),
    "multiply": ("elementwise_mul", ("X", "Y"), ()),
    "maximum": ("elementwise_max", ("X", "Y"), ()),
    "minimum": ("elementwise_min", ("X", "Y"), ()),
    "gelu": ("gelu", ("X",), ("approximate",)),
    # One input X, one output Out, no attributes: the legacy op has the function's name.
    **{name: (name, ("X",), ()) for name in ("sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "floor", "ceil",
                                              "sign", "sin", "cos")},
}
_ATTR_DEFAULTS = {"trans_x": False, "trans_y": False, "approximate": False}
_KWARG_ATTRS = {"transpose_x": "trans_x", "transpose_y": "trans_y", "approximate": "approximate"}


def _legacy_function(name, original):
    op_type, slots, attr_names = LEGACY_FUNCTIONS[name]

    @functools.wraps(original)
    def call(*args, **kwargs):
        from paddle.base.framework import Variable

        if not args or not isinstance(args[0], Variable):
            return original(*args, **kwargs)
        from paddle.base.layer_helper import LayerHelper

        tensors, rest = args[:len(slots)], args[len(slots):]
        attrs = {**_ATTR_DEFAULTS, **dict(zip(attr_names, rest))}
        attrs.update({_KWARG_ATTRS[k]: v for k, v in kwargs.items() if k in _KWARG_ATTRS})
        attrs = {k: bool(v) for k, v in attrs.items() if k in attr_names}
        if op_type.startswith("elementwise_"):
            attrs["axis"] = -1
        helper = LayerHelper(op_type)
        out = helper.create_variable_for_type_inference(tensors[0].dtype)
        helper.append_op(type=op_type, inputs={slot: [t] for slot, t in zip(slots, tensors)},
                         outputs={"Out": [out]}, attrs=attrs)
        return out

    return call


def _conv_with_fusable_bias(original):
    # Under the legacy IR Paddle 3.3 adds a convolution's bias as reshape2(bias) + elementwise_add,
    # which oneDNN's conv-bias fuse pass does not match: every biased convolution of an export then
    # runs a separate full-tensor add (32 of them in the imported PP-OCRv4 recogniser, 5 of its
    # 42 ms). The 1-D bias added on the channel axis (`axis`), as Paddle 2 wrote it, fuses.
    signature = inspect.signature(original)

    @functools.wraps(original)
    def conv(*args, **kwargs):
        from paddle.base.framework import Variable

        call = signature.bind(*args, **kwargs)  # F.conv2d passes everything by position, the Conv layers by name
        call.apply_defaults()
        x, bias, channel_dim = call.arguments["x"], call.arguments["bias"], call.arguments["channel_dim"]
        if bias is None or not isinstance(x, Variable) or len(bias.shape) != 1 or channel_dim < 0:
            return original(*args, **kwargs)
        from paddle.base.layer_helper import LayerHelper

        call.arguments["bias"] = None
        pre_bias = original(*call.args, **call.kwargs)
        helper = LayerHelper("elementwise_add")
        out = helper.create_variable_for_type_inference(pre_bias.dtype)
        helper.append_op(type="elementwise_add", inputs={"X": [pre_bias], "Y": [bias]}, outputs={"Out": [out]},
                         attrs={"axis": channel_dim})
        return out

    return conv


@contextlib.contextmanager
def _legacy_functions():
    """Inside: LEGACY_FUNCTIONS also append their legacy ops (restored on exit; dygraph/PIR calls unchanged)."""
    from paddle import _C_ops
    from paddle.base.framework import Variable
    from paddle.nn.functional import conv as conv_module

    # The functions call `_C_ops.<name>`; a legacy Variable's methods (`x.matmul(y)`) are those calls.
    owners = [(_C_ops, name) for name in LEGACY_FUNCTIONS]
    owners += [(Variable, name) for name in LEGACY_FUNCTIONS if name in vars(Variable)]
    originals = {(owner, name): getattr(owner, name) for owner, name in owners}
    patches = {key: _legacy_function(key[1], original) for key, original in originals.items()}
    originals[(conv_module, "_conv_nd")] = conv_module._conv_nd  # F.conv2d and the Conv layers call it
    patches[(conv_module, "_conv_nd")] = _conv_with_fusable_bias(conv_module._conv_nd)
    try:
        for (owner, name), patched in patches.items():
            setattr(owner, name, patched)
        yield
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


_paddleslim = None


def import_paddleslim():
    """Import paddleslim (for its quantization observers and quanters) without touching the session."""
    global _paddleslim
    if _paddleslim is None:
        with session_guard(), _without_cv2(), _keeping_matplotlib_backend():
            import paddleslim
        _paddleslim = paddleslim
    return _paddleslim


def import_paddleslim_pruners():
    """paddleslim with what its dygraph pruners and `sensitive()` need on Paddle 3.x (applied once).

    These patches change numpy and paddle for the rest of the process (the pruners call
    `np.product` and `_to_static_mode_guard_` at run time), which is why only code that
    runs PaddleSlim's pruners asks for them.
    """
    paddleslim = import_paddleslim()
    apply_pruner_aliases()
    with session_guard(), _without_cv2():
        from paddleslim.core import dygraph as slim_dygraph
        from paddleslim.dygraph.prune import unstructured_pruner

    _patch_trace(slim_dygraph)
    _patch_unstructured_masks(unstructured_pruner.UnstructuredPruner)
    return paddleslim


@contextlib.contextmanager
def _keeping_matplotlib_backend():
    # paddleslim.common.analyze_helper runs matplotlib.use('Agg') at import: a notebook would
    # lose its inline plots (and a desktop session its windows) for the rest of the session.
    # Switching back afterwards is not enough (the notebook's figure display hooks are only
    # set up when pyplot first loads the inline backend), so the call is ignored instead.
    import matplotlib

    use = matplotlib.use
    requested = []
    matplotlib.use = lambda backend, *args, **kwargs: requested.append(backend)
    try:
        yield
    finally:
        matplotlib.use = use
        FOUND["matplotlib_use_called"] = requested


def _patch_trace(slim_dygraph):
    # Every dygraph pruner, sensitive() and FLOPs analysis traces through _dy2prog,
    # which enables static mode and does not restore it when the trace fails.
    trace = slim_dygraph._dy2prog
    if getattr(trace, "_slimkit_guarded", False):
        return

    @functools.wraps(trace)
    def guarded(*args, **kwargs):
        with legacy_ir():
            return trace(*args, **kwargs)

    guarded._slimkit_guarded = True
    slim_dygraph._dy2prog = guarded


def _patch_unstructured_masks(pruner_cls):
    # On Paddle 3.x `paddle.assign(np_bool, output=float_mask)` turns the mask bool and
    # `param * mask` then fails type promotion; cast masks back to the weight dtype.
    for name in ("_update_masks", "set_static_masks"):
        method = getattr(pruner_cls, name)
        if getattr(method, "_slimkit_guarded", False):
            continue

        def make(method):
            @functools.wraps(method)
            def wrapped(self, *args, **kwargs):
                out = method(self, *args, **kwargs)
                _float_masks(self)
                return out

            wrapped._slimkit_guarded = True
            return wrapped

        setattr(pruner_cls, name, make(method))


def _float_masks(pruner):
    # The mask lives twice: in pruner.masks (used by its hooks) and as a buffer of the
    # layer (saved in the state dict); both must become float again.
    for layer in pruner.model.sublayers(include_self=True):
        for buffer_name, buffer in list(layer._buffers.items()):
            if buffer is not None and buffer.dtype == paddle.bool and buffer_name.endswith("_mask"):
                layer._buffers[buffer_name] = paddle.cast(buffer, "float32")
    for param_name, mask in pruner.masks.items():
        if mask.dtype == paddle.bool:
            owner = [l for l in pruner.model.sublayers(include_self=True)
                     if param_name.replace(".", "_") + "_mask" in l._buffers]
            pruner.masks[param_name] = (owner[0]._buffers[param_name.replace(".", "_") + "_mask"]
                                        if owner else paddle.cast(mask, "float32"))



# --- quantization (paddle.quantization export) ---------------------------------------

def fix_linear_quanter_zero_point():
    """Give paddle's LinearQuanter/LinearDequanter zero points of zeros when a quanter reports none.

    Paddle 3.3's symmetric quanters return `zero_points() = None`, which `convert()` passes on
    and `paddle.to_tensor(None)` rejects (TypeError: ... data type NoneType).
    """
    from paddle.nn.quant import format as quant_format

    for cls in (quant_format.LinearQuanter, quant_format.LinearDequanter):
        init = cls.__init__
        if getattr(init, "_slimkit_guarded", False):
            continue

        def make(init):
            @functools.wraps(init)
            def wrapped(self, scales, zero_point=None, *args, **kwargs):
                if zero_point is None:
                    zero_point = np.zeros(np.shape(np.asarray(scales, dtype="float32")), dtype="float32")
                init(self, scales, zero_point, *args, **kwargs)

            wrapped._slimkit_guarded = True
            wrapped._slimkit_original = init
            return wrapped

        cls.__init__ = make(init)


@functools.lru_cache(maxsize=None)
def _rank_local_channel_wise_quanter():
    """PaddleSlim's channel-wise abs-max weight quanter factory, its layer without the all-reduce of its scales."""
    import_paddleslim()
    from paddleslim.quant.quanters import channel_wise_abs_max as slim

    class RankLocalChannelWiseLayer(slim.FakeQuanterChannelWiseAbsMaxObserverLayer):
        def dynamic_forward(self, input):
            # PaddleSlim's dynamic_forward, less `paddle.distributed.all_reduce(scale, MAX)`.
            quant_out = slim._create_tensor(type=input.type, name=f"{input.name}.quantized.dequantized",
                                            shape=input.shape, dtype=input.dtype, persistable=False)
            out, _ = slim._legacy_C_ops.fake_channel_wise_quantize_dequantize_abs_max(
                input, quant_out, self._scale, "bit_length", self._bit_length, "quant_axis", self._quant_axis)
            return out

    class RankLocalChannelWise(slim.FakeQuanterChannelWiseAbsMaxObserver):
        def _get_class(self):
            return RankLocalChannelWiseLayer

    return RankLocalChannelWise


def channel_wise_weight_quanter(bits=8):
    """PaddleSlim's channel-wise abs-max weight fake quanter, computing its scales on this process alone.

    PaddleSlim 2.6's quanter all-reduces (MAX) its per-channel scales over the processes in
    every forward once paddle.distributed is initialized. In slimkit's data-parallel runs every
    process holds the same weights, so the all-reduce changes nothing, and a forward pass that
    only one process runs (rank 0's measurements and exports, an evaluation share one batch
    longer than another's) would wait for processes that never join it (gloo gives up after
    30 s). Outside data-parallel runs the two are the same quanter.
    """
    return _rank_local_channel_wise_quanter()(bit_length=bits)


# --- losses ----------------------------------------------------------------------------

def pixel_cross_entropy(scores, labels, ignore_index=255, label_smoothing=0.0):
    """Mean cross-entropy of [N, C, H, W] scores against [N, H, W] labels, pixels at `ignore_index` skipped.

    Paddle 3.3's `F.cross_entropy(..., label_smoothing=e)` fails for per-pixel labels
    (`label_smooth` has no int64 kernel once labels carry a trailing class axis), so the
    smoothed loss is written out: (1 - e) * NLL + e * mean over classes of -log p, which is
    the cross-entropy against (1 - e) * one-hot + e / C, as paddle smooths per-image labels.
    """
    log_p = paddle.nn.functional.log_softmax(scores, axis=1)
    valid = labels != ignore_index
    picked = paddle.take_along_axis(log_p, paddle.where(valid, labels, paddle.zeros_like(labels)).unsqueeze(1),
                                    axis=1).squeeze(1)
    loss = -picked if not label_smoothing else -(1 - label_smoothing) * picked - label_smoothing * log_p.mean(axis=1)
    weight = valid.astype(loss.dtype)
    return (loss * weight).sum() / paddle.clip(weight.sum(), min=1.0)


# --- ONNX export (paddle2onnx) ------------------------------------------------------------

INTERP_OPS = ("nearest_interp_v2", "bilinear_interp_v2", "bicubic_interp_v2", "linear_interp_v2",
              "trilinear_interp_v2")


def onnx_ready_program(prefix, target):
    """The prefix of a copy of the saved program `prefix` that paddle2onnx converts (or `prefix` itself).

    paddle2onnx 2.1 stops on every `F.interpolate(x, scale_factor=s)` of a saved legacy
    program ("(Unimplemented) the 0th elementwise MUST be ir::FloatAttribute": it cannot read
    the `scale` attribute), which is how segmentation networks upsample, slimkit's own
    small_unet included. Where the input's spatial size is fixed in the program (the export's
    input shape) and `size * scale` is a whole number, the op is given that output size
    instead (`out_h`/`out_w`, `scale` emptied): Paddle then samples at in/out = 1/scale, the
    very positions the scale gave, so the program computes the same values (the ONNX
    verification compares them). Ops with a tensor-valued size or scale, or a fractional
    output size, are left as they are. The original files are never changed.
    """
    import pathlib
    import shutil

    prefix, target = str(prefix), pathlib.Path(target)
    with legacy_ir():
        program = paddle.static.Program.parse_from_string(pathlib.Path(prefix + ".pdmodel").read_bytes())
        changed = sum(_fixed_size_interp(block, op) for block in program.blocks for op in block.ops)
        if not changed:
            return prefix
        target.parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(str(target) + ".pdmodel").write_bytes(program.desc.serialize_to_string())
    shutil.copy(prefix + ".pdiparams", str(target) + ".pdiparams")
    FOUND["interp_scale_rewritten"] = FOUND.get("interp_scale_rewritten", 0) + changed
    return str(target)


def _fixed_size_interp(block, op):
    """Give one interpolate op with a `scale` attribute the equal fixed output size; whether it changed."""
    if op.type not in INTERP_OPS or any(op.input(name) for name in ("OutSize", "SizeTensor", "Scale")
                                        if name in op.input_names):
        return False
    scale = list(op.attr("scale") or [])
    if not scale or op.attr("data_layout") not in ("NCHW", "NCDHW", "NCW"):
        return False
    spatial = list(block._var_recursive(op.input("X")[0]).shape)[2:]
    scale = scale * len(spatial) if len(scale) == 1 else scale
    sizes = [dim * s for dim, s in zip(spatial, scale)]
    if len(scale) != len(spatial) or any(d <= 0 for d in spatial) or any(abs(v - round(v)) > 1e-6 for v in sizes):
        return False
    for name, value in zip(("out_d", "out_h", "out_w")[-len(sizes):], sizes):
        op._set_attr(name, int(round(value)))
    op._set_attr("scale", [])
    return True


# --- functions that work under every IR (the rebuilt forwards of exported programs) ---------

class _AnyIR:
    """paddle functions that also run under the legacy program IR (`any_ir.matmul(x, y)`, ...).

    In Paddle 3.3 about sixty public functions (paddle.matmul, paddle.sum, paddle.exp,
    paddle.maximum, F.sigmoid, F.gelu, ...) are bound to `_C_ops` calls that accept only dygraph
    tensors and PIR values: under the legacy IR they fail with "argument (position 1) must be
    Value, but got Variable", so a model calling them cannot be saved by slimkit's legacy-IR
    export. Each function here calls paddle's own eagerly and in PIR, and appends the legacy op
    under the legacy IR.
    """

    UNARY = ("sigmoid", "tanh", "exp", "sqrt", "rsqrt", "abs", "log", "floor", "ceil", "sign", "sin", "cos")

    @staticmethod
    def _call(name, legacy, slots, attrs, dtype, *tensors, **kwargs):
        function = getattr(paddle.nn.functional, name, None) if name in ("gelu", "softplus", "sigmoid") else None
        function = function or getattr(paddle, name)
        if paddle.in_dynamic_mode() or pir_enabled():
            return function(*tensors, **kwargs)
        from paddle.base.layer_helper import LayerHelper

        helper = LayerHelper(legacy)
        out = helper.create_variable_for_type_inference(dtype or tensors[0].dtype)
        helper.append_op(type=legacy, inputs={slot: [t] for slot, t in zip(slots, tensors)}, outputs={"Out": [out]},
                         attrs=attrs)
        return out

    def matmul(self, x, y, transpose_x=False, transpose_y=False):
        return self._call("matmul", "matmul_v2", ("X", "Y"), {"trans_x": transpose_x, "trans_y": transpose_y}, None,
                          x, y, transpose_x=transpose_x, transpose_y=transpose_y)

    def maximum(self, x, y):
        return self._call("maximum", "elementwise_max", ("X", "Y"), {"axis": -1}, None, x, y)

    def minimum(self, x, y):
        return self._call("minimum", "elementwise_min", ("X", "Y"), {"axis": -1}, None, x, y)

    def greater_than(self, x, y):
        return self._call("greater_than", "greater_than", ("X", "Y"), {"axis": -1}, paddle.bool, x, y)

    def logical_and(self, x, y):
        return self._call("logical_and", "logical_and", ("X", "Y"), {}, paddle.bool, x, y)

    def logical_or(self, x, y):
        return self._call("logical_or", "logical_or", ("X", "Y"), {}, paddle.bool, x, y)

    def logical_not(self, x):
        return self._call("logical_not", "logical_not", ("X",), {}, paddle.bool, x)

    def gelu(self, x, approximate=False):
        return self._call("gelu", "gelu", ("X",), {"approximate": bool(approximate)}, None, x,
                          approximate=approximate)

    def softplus(self, x, beta=1.0, threshold=20.0):
        return self._call("softplus", "softplus", ("X",), {"beta": float(beta), "threshold": float(threshold)}, None,
                          x, beta=beta, threshold=threshold)

    def sum(self, x, axis=None, keepdim=False):
        return self._reduce("sum", "reduce_sum", x, axis, keepdim)

    def amax(self, x, axis=None, keepdim=False):
        return self._reduce("amax", "reduce_amax", x, axis, keepdim)

    def amin(self, x, axis=None, keepdim=False):
        return self._reduce("amin", "reduce_amin", x, axis, keepdim)

    def _reduce(self, name, legacy, x, axis, keepdim):
        axes = [] if axis is None else ([axis] if isinstance(axis, int) else list(axis))
        return self._call(name, legacy, ("X",), {"dim": axes or [0], "keep_dim": bool(keepdim),
                                                 "reduce_all": not axes}, None, x, axis=axis, keepdim=keepdim)


def _unary(name):
    def unary(self, x):
        return self._call(name, name, ("X",), {}, None, x)

    unary.__doc__ = f"paddle.{name} (the legacy op `{name}` under the legacy IR)"
    return unary


for _name in _AnyIR.UNARY:
    setattr(_AnyIR, _name, _unary(_name))

any_ir = _AnyIR()


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=False, align_mode=0,
                data_format="NCHW"):
    """paddle.nn.functional.interpolate, with a nearest resize by whole factors written as output sizes.

    paddle2onnx 2.1 cannot convert an `nearest_interp` (nor `bilinear_interp`) that carries its
    `scale` attribute ("the 0th elementwise MUST be ir::FloatAttribute"), which is how Paddle
    writes `scale_factor`; the same resize by output sizes (the input's, times the factors) converts.
    For nearest with whole factors the two pick the same pixels, so that case is written by size.
    """
    F = paddle.nn.functional
    factors = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else None
    whole = factors is not None and all(float(f).is_integer() and f >= 1 for f in factors)
    if size is None and whole and mode == "nearest" and data_format in ("NCHW", "NCDHW") and \
            len(factors) == len(x.shape) - 2:
        shape = paddle.shape(x)
        size = [shape[2 + i] * int(f) for i, f in enumerate(factors)]
        scale_factor = None
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners,
                         align_mode=align_mode, data_format=data_format)
