"""The model traced once into a Paddle PIR program (no change to the model or the session), and its eager output."""

import contextlib

import paddle

from ... import compat
from ...core.errors import ModelError
from ...core.surgery import eval_mode, train_mode

# Views of a parameter (a PReLU slope reshaped for broadcasting, ...) still name that parameter.
PARAM_VIEWS = {"reshape", "reshape_", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "cast", "assign", "flatten"}


def parameter_values(program):
    """{value id: parameter name} of a traced program's parameters and the views of them (PARAM_VIEWS)."""
    names = {}
    for op in program.global_block().ops:
        if op.name() == "builtin.parameter":
            names[op.result(0).id] = op.attrs()["parameter_name"]
        elif (op.name().removeprefix("pd_op.") in PARAM_VIEWS and op.num_operands()
              and _initialized(op.operand_source(0)) and op.operand_source(0).id in names):
            names[op.result(0).id] = names[op.operand_source(0).id]
    return names


def _initialized(value):
    return value is not None and value.initialized()


def flat_outputs(out):
    """The tensors (or traced values) of a model output of any nesting of tuples, lists and dicts, in order."""
    if isinstance(out, dict):
        return [t for key in out for t in flat_outputs(out[key])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flat_outputs(o)]
    return [out] if out is not None and hasattr(out, "shape") else []


def output_structure(out):
    """What the eager output looks like (containers, keys and concrete shapes), to compare a pruned model's with."""
    if isinstance(out, dict):
        return {key: output_structure(value) for key, value in out.items()}
    if isinstance(out, (list, tuple)):
        return (type(out).__name__, [output_structure(o) for o in out])
    return list(out.shape) if hasattr(out, "shape") else type(out).__name__


def check_shape(input_shape):
    try:
        shape = [int(d) for d in input_shape]
    except (TypeError, ValueError):
        shape = None
    if not shape or any(d <= 0 for d in shape):
        raise ModelError(f"input_shape must be a list of positive ints like [1, 3, 32, 32], got {input_shape!r}",
                         "pass the shape of one input batch: [batch, channels, height, width]")
    return shape


def check_forward_runs(model, input_shape, training=False):
    # The static trace checks fewer shapes than an eager run (a conv given the wrong channel
    # count traces fine), so run the model once as the user would.
    mode = train_mode if training else eval_mode
    try:
        with compat.session_guard(), mode(model), paddle.no_grad():
            return model(paddle.zeros(input_shape, dtype="float32"))
    except Exception as err:
        where = " in training mode" if training else ""
        raise ModelError(f"the model cannot run{where} on input_shape {input_shape}: {type(err).__name__}: "
                         f"{last_line(err)}", SHAPE_HINT) from None


SHAPE_HINT = ("check input_shape ([batch, channels, height, width] of your data) and that "
               "model(paddle.randn(input_shape)) works")


def last_line(err):
    text = str(err).strip()
    return text.splitlines()[-1] if text else ""


def trace_program(model, input_shape, training=False):
    """(the traced PIR program, its output values) of the eval-mode (or training-mode) forward."""
    # to_static on the bound forward (not on the layer) leaves `model.forward` untouched.
    pir_guard = contextlib.nullcontext() if compat.pir_enabled() else paddle.pir_utils.IrGuard()
    mode = train_mode if training else eval_mode
    try:
        with compat.session_guard(), pir_guard, mode(model):
            spec = [paddle.static.InputSpec(input_shape, "float32")]
            static_forward = paddle.jit.to_static(model.forward, input_spec=spec, full_graph=True)
            program = static_forward.concrete_program
            return program.main_program, flat_outputs(list(program.outputs))
    except OSError as err:
        if "source code" not in str(err):
            raise ModelError(f"cannot trace the model on input_shape {input_shape}: OSError: {last_line(err)}",
                             SHAPE_HINT) from None
        raise ModelError(f"cannot trace the model: the source code of {type(model).__name__}.forward (or of a "
                         "layer it calls) cannot be read, and Paddle's to_static trace converts forward from its "
                         "source (classes defined in `python -`, `exec` or an interactive session have none)",
                         "define the model classes in a .py file and import them (notebook cells work too)") from None
    except Exception as err:
        raise ModelError(f"cannot trace the model on input_shape {input_shape}: {type(err).__name__}: "
                         f"{last_line(err)}", SHAPE_HINT) from None
