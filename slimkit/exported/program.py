"""An exported program read into plain Python: its ops, values, parameters, inputs and outputs.

`read_program(files)` loads the program with Paddle's own loader (a legacy `.pdmodel` is
translated to PIR with `paddle.pir.translate_to_pir`, so one op vocabulary serves both formats),
copies every parameter out as a numpy array and leaves Paddle's program behind: what the
translation works on is an `ExportedProgram` of `Op`s and `Value`s that needs no static mode.
The user's session (PIR flag, dynamic mode) is as it was afterwards, also when loading fails.
"""

import contextlib
import dataclasses

import numpy as np
import paddle

from .. import compat
from ..core.errors import ModelError

# Ops that only carry the program's interface: the rebuilt forward's arguments and return values.
INPUT_OPS = ("data", "feed")
OUTPUT_OPS = ("fetch",)


@dataclasses.dataclass(eq=False)
class Value:
    """One value of the program: a tensor (shape, dtype), a list (`builtin.combine`) or a parameter."""

    id: int
    shape: list = None  # None for a list of tensors
    dtype: str = None
    param: str = None  # the parameter's name, for a parameter
    producer: "Op" = None
    index: int = 0  # which result of its producer
    users: list = dataclasses.field(default_factory=list)  # [(Op, operand index)]

    @property
    def rank(self):
        return len(self.shape) if self.shape is not None else None


@dataclasses.dataclass(eq=False)
class Op:
    """One operation: its name without the `pd_op.` prefix (`conv2d`, `builtin.combine`), operands, results."""

    index: int
    name: str
    inputs: list  # Value or None (an optional operand left out)
    outputs: list
    attrs: dict
    where: str = ""  # the layer path the exporter recorded (PIR `struct_name`), if any

    def __repr__(self):
        return f"Op({self.index}, {self.name})"


@dataclasses.dataclass
class ExportedProgram:
    """The ops of an exported program in order, with its parameters (numpy) and its interface."""

    ops: list
    params: dict  # name -> numpy array
    trainable: dict  # name -> bool
    inputs: list  # [(name, Value)]
    outputs: list  # [(name, Value)]
    files: object = None  # the ModelFiles it was read from

    def signature(self):
        """{"inputs": [...], "outputs": [...]}: name, shape (-1 where dynamic) and dtype of each, in order."""
        def describe(name, value):
            return {"name": name, "shape": [int(d) for d in value.shape], "dtype": value.dtype}

        return {"inputs": [describe(n, v) for n, v in self.inputs],
                "outputs": [describe(n, v) for n, v in self.outputs]}


def read_program(files):
    """The ExportedProgram of `files` (a ModelFiles); ModelError if Paddle cannot load it."""
    scope = paddle.static.Scope()
    with compat.session_guard(), _loading(files):
        paddle.enable_static()
        executor = paddle.static.Executor(paddle.CPUPlace())
        try:
            with paddle.static.scope_guard(scope):
                program, feeds, fetches = paddle.static.load_inference_model(str(files.prefix), executor)
                if files.format == "legacy":
                    program = paddle.pir.translate_to_pir(program.desc)
        except Exception as err:
            raise ModelError(f"Paddle cannot load {files.program}: {type(err).__name__}: {_first_line(err)}",
                             "check that the program and .pdiparams files belong together and are complete") from None
        return _convert(program, scope, list(feeds), files)


@contextlib.contextmanager
def _loading(files):
    # A .json program loads only with PIR on, a .pdmodel only under the legacy IR.
    if files.format == "pir":
        guard = contextlib.nullcontext() if compat.pir_enabled() else paddle.pir_utils.IrGuard()
    else:
        guard = paddle.pir_utils.OldIrGuard()
    with guard:
        yield


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[-1][:300] if text else ""


def _convert(program, scope, feed_names, files):
    values, ops, params, trainable = {}, [], {}, {}
    inputs, outputs = {}, []

    def value(v):
        if v is None or not v.initialized():
            return None
        if v.id not in values:
            dense = v.is_dense_tensor_type()
            values[v.id] = Value(len(values), [int(d) for d in v.shape] if dense else None,
                                 _dtype_name(v.dtype) if dense else None)
        return values[v.id]

    for pir_op in program.global_block().ops:
        name = pir_op.name()
        name = name[len("pd_op."):] if name.startswith("pd_op.") else name
        attrs = {k: _plain(v) for k, v in pir_op.attrs().items() if k not in _BOOKKEEPING}
        if name == "builtin.parameter":
            pname = attrs["parameter_name"]
            out = value(pir_op.result(0))
            out.param = pname
            params[pname] = _read_param(scope, pname)
            trainable[pname] = bool(_first(attrs.get("trainable", True)))
            continue
        op = Op(len(ops), name, [value(pir_op.operand_source(i)) for i in range(pir_op.num_operands())],
                [value(pir_op.result(i)) for i in range(pir_op.num_results())], attrs,
                str(attrs.pop("struct_name", "") or ""))
        for i, out in enumerate(op.outputs):
            if out is not None:
                out.producer, out.index = op, i
        for i, v in enumerate(op.inputs):
            if v is not None:
                v.users.append((op, i))
        if name in INPUT_OPS:
            inputs[attrs["name"]] = op.outputs[0]
        elif name in OUTPUT_OPS:
            outputs.append((int(attrs.get("col", len(outputs))), attrs["name"], op.inputs[0]))
        ops.append(op)
    ordered = [(n, inputs[n]) for n in feed_names if n in inputs] + [
        (n, v) for n, v in inputs.items() if n not in feed_names]
    return ExportedProgram(ops, params, trainable, ordered, [(n, v) for _, n, v in sorted(outputs, key=_col)],
                           files)


def _col(entry):
    return entry[0]


_BOOKKEEPING = ("stop_gradient", "persistable", "op_callstack", "place")


def _read_param(scope, name):
    var = scope.find_var(name)
    if var is None:
        raise ModelError(f"the parameter {name} is not in the .pdiparams file",
                         "the program and .pdiparams files do not belong together")
    return np.array(var.get_tensor())


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def _dtype_name(dtype):
    return str(dtype).replace("paddle.", "")


def _plain(value):
    """An attribute as a Python value: DataType -> "float32", lists element by element."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, paddle.base.libpaddle.DataType):
        return value.name.lower()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)
