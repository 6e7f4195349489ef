"""`slimkit.from_inference`: an exported inference model back as a paddle.nn.Layer slimkit can compress."""

from ..core.errors import ConfigError, ModelError
from . import op_functional, op_layers  # noqa: F401  (they register slimkit's translators)
from .codegen import model_class
from .files import locate
from .program import read_program
from .translate import Builder


def from_inference(path):
    """The exported model at `path` as a paddle.nn.Layer computing the same outputs (in eval mode).

    `path`: the model's prefix (`output/inference`), its program file (`.json` or `.pdmodel`) or a
    folder holding one model, with its `.pdiparams`. Convs, linear layers, batch and layer norms
    become paddle layers holding the program's weights; the rest of the program is the forward,
    written as Python (see slimkit.exported.codegen). A program with ops slimkit cannot rebuild
    raises one ModelError naming all of them. The model's `program_signature` keeps the
    program's inputs and outputs, which slimkit's exports keep; `slimkit_spec` rebuilds it.
    """
    files = locate(path)
    program = read_program(files)
    builder = Builder(program).run()
    if builder.failures:
        kinds = len({op.name for op, _ in builder.failures})
        raise ModelError(f"{files.program} cannot be rebuilt as a paddle.nn.Layer: {len(builder.failures)} op(s) "
                         f"of {kinds} kind(s) are not supported: {builder.fail_message()}",
                         "teach slimkit those ops with slimkit.exported.register_translator "
                         "(docs/exported-models.md)")
    signature = {**program.signature(), "program": str(files.program), "params": str(files.params),
                 "format": files.format}
    model = model_class(builder, files)(signature)
    for name, layer in builder.layers.items():
        model.add_sublayer(name, layer)
    model.eval()
    model.slimkit_spec = {"inference": str(files.prefix)}
    return model


def program_input_shape(model, given=None):
    """The input shape a run of an imported `model` uses: `given`, else the program's own (batch 1).

    ConfigError (naming `input_shape`) when the program's input has dynamic sizes besides the
    batch and none is given, or when `given` does not fit the program's input.
    """
    inputs = model.program_signature["inputs"]
    if len(inputs) != 1:
        raise ModelError(f"the program has {len(inputs)} inputs ({', '.join(i['name'] for i in inputs)}); slimkit's "
                         "pipeline feeds one", "compress a program with one input")
    declared = inputs[0]["shape"]
    if given is not None:
        fits = len(given) == len(declared) and all(d < 0 or d == g for d, g in zip(declared[1:], given[1:]))
        if not fits:
            raise ConfigError("input_shape", f"{list(given)} does not fit the program's input "
                                             f"{inputs[0]['name']} {declared} (-1: any size)",
                              f"give a shape like {_example(declared)}")
        return list(given)
    if any(d < 0 for d in declared[1:]):
        raise ConfigError("input_shape", f"the program's input {inputs[0]['name']} {declared} has dynamic sizes "
                                         "(-1), so the shape to compress for is not known",
                          f"give input_shape, e.g. input_shape: {_example(declared)}")
    return [1, *declared[1:]]


def _example(declared):
    return [1] + [d if d > 0 else 320 for d in declared[1:]]
