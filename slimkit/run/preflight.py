"""Everything a pipeline verifies before any work: `slimkit check` and `Pipeline.run` both use it.

Nothing that can be known before training may fail after it. Checked here, without
training (the config itself, every block and stage in one pass, is checked by
`run.config.load_config_all` first): the device (the installed Paddle has it, and TensorRT
when asked for), the model and one forward pass at the input shape on that device, the
model's output against the task (`task.output`), the stage order (nothing traces or prunes a quantized model;
distillation has a teacher; no training stage silently refills zeroed weights),
layer names against the built model (with the closest name), a FLOPs target against what
the untrained model's channel groups can give, the task against the model's output and the
data's labels (slimkit.train.checks), that paddle2onnx converts the model when the onnx
format is asked, and the output folder.
"""

import copy

from ..core import device as devices
from ..core.errors import ConfigError, SlimkitError, flatten, raise_all
from ..data.sources import first_samples
from ..deploy.formats import check_onnx
from ..pruning.dependency import check_forward_runs  # the one eager forward check, as analyze() runs it
from . import rundir
from .lock import RunLock


# --- the pipeline: model, stage order, layer names, targets, output folder --------------------
def check_pipeline(pipeline, resume=False, overwrite=False):
    """Raise every problem `pipeline.run(resume, overwrite)` would hit before or after training."""
    raise_all(device_errors(pipeline))  # nothing below can run on a device that is not there
    with devices.using(pipeline.device):
        _check_on_device(pipeline, resume, overwrite)


def device_errors(pipeline):
    """The run's device, and TensorRT if asked for, against the installed Paddle."""
    try:
        used = devices.resolve(pipeline.device)
        if pipeline.report_config.tensorrt:
            devices.check_tensorrt(used)
    except ConfigError as err:
        return [err]
    return []


def _check_on_device(pipeline, resume, overwrite):
    errors = []
    if getattr(pipeline.input_model, "program_signature", None) is not None:
        from ..exported import program_input_shape

        program_input_shape(pipeline.input_model, pipeline.input_shape)  # the data must fit the program's input
    model = copy.deepcopy(pipeline.input_model)  # the checks trace and probe: never the user's model
    devices.move(model, devices.current())
    # The task's output, the labels against it, the loss and metric on a few samples (names a missing channel axis).
    pipeline.task.check_outputs(model, pipeline.input_shape, first_samples(pipeline.data.train))
    check_forward_runs(model, pipeline.input_shape)  # nothing below can be checked on a model that does not run
    errors += stage_order_errors(pipeline.stages)
    errors += layer_name_errors(pipeline.stages, model, pipeline.input_shape)
    try:
        check_onnx(pipeline.export, model, pipeline.input_shape)
    except SlimkitError as err:
        errors.append(err)
    try:
        rundir.writable_without_writing(pipeline.out_dir)
        RunLock(pipeline.out_dir).check_free()  # another run working in the folder now
        folders = rundir.folder_names(s.display_name for s in pipeline.stages)
        rundir.inspect(pipeline.out_dir, pipeline.identity(), folders, resume, overwrite)
    except SlimkitError as err:
        errors.append(err)
    raise_all(errors)


def stage_order_errors(stages):
    """Stage orders that cannot work, each named by the later stage's path (what each stage declares)."""
    errors = []
    quantized_by = None
    compressed = False
    for i, stage in enumerate(stages):
        kind, name = stage.type_name, stage.display_name
        named = name if name == kind else f"{name} ({kind})"
        if quantized_by is not None and stage.traces:
            errors.append(ConfigError(f"stages[{i}]", f"{named} runs after the quantization stage "
                                                      f"{quantized_by}: a quantized model cannot be traced, "
                                                      "pruned or quantized again",
                                      f"move {name} before {quantized_by}"))
        if stage.needs_teacher and not compressed:
            errors.append(ConfigError(f"stages[{i}].teacher", f"{name} has no teacher: no compressing stage "
                                                              "runs before it",
                                      "put distill after a pruning or quantization stage (the model before "
                                      "it is the teacher), or give `teacher: {name: ..., checkpoint: ...}`"))
        errors += _at_stage(f"stages[{i}]", stage.order_errors(stages[i + 1:]))
        if stage.quantizes and quantized_by is None:
            quantized_by = name
        compressed = compressed or stage.compresses
    return errors


def layer_name_errors(stages, model, input_shape, indices=None):
    """Each stage's own checks on the built (untrained) model (`Strategy.preflight`): layer names, targets.

    `indices`: each stage's position in the config (default 0, 1, ...), for the errors' paths.
    """
    errors = []
    as_built = True
    for i, stage in zip(indices if indices is not None else range(len(stages)), stages):
        try:
            found = stage.preflight(model, input_shape, as_built=as_built)
        except SlimkitError as err:
            found = [err]
        errors += _at_stage(f"stages[{i}]", found)
        as_built = as_built and not stage.restructures
    return errors


def _at_stage(path, found):
    """`found` errors, their paths relative to a stage, as ConfigErrors at the stage's `path`."""
    errors = []
    for err in flatten(found):
        where = getattr(err, "path", "") or ""
        message = err.message[len(where) + 2:] if where and err.message.startswith(f"{where}: ") else err.message
        errors.append(ConfigError(f"{path}.{where}" if where else path, message, err.hint))
    return errors
