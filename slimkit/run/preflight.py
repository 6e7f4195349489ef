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

QUANTIZING = ("qat", "ptq")
AFTER_QUANT_FORBIDDEN = ("filter_pruning", "sparse_pruning", "qat", "ptq")


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
        folders = ["00-baseline", *(pipeline.stage_dir(i).name for i in range(len(pipeline.stages)))]
        rundir.writable_without_writing(pipeline.out_dir)
        RunLock(pipeline.out_dir).check_free()  # another run working in the folder now
        rundir.inspect(pipeline.out_dir, pipeline.identity(), folders, resume, overwrite)
    except SlimkitError as err:
        errors.append(err)
    raise_all(errors)


def stage_order_errors(stages):
    """Stage orders that cannot work, each named by the later stage's path."""
    errors = []
    quantized_by = None
    compressed = False
    for i, stage in enumerate(stages):
        kind, name = stage.type_name, stage.display_name
        named = name if name == kind else f"{name} ({kind})"
        if quantized_by is not None and kind in AFTER_QUANT_FORBIDDEN:
            errors.append(ConfigError(f"stages[{i}]", f"{named} runs after the quantization stage "
                                                      f"{quantized_by}: a quantized model cannot be traced, "
                                                      "pruned or quantized again",
                                      f"move {name} before {quantized_by}"))
        if kind == "distill" and getattr(stage, "teacher", None) is None and not compressed:
            errors.append(ConfigError(f"stages[{i}].teacher", f"{name} has no teacher: no compressing stage "
                                                              "runs before it",
                                      "put distill after a pruning or quantization stage (the model before "
                                      "it is the teacher), or give `teacher: {name: ..., checkpoint: ...}`"))
        if kind == "sparse_pruning" and getattr(stage, "strip", False):
            later = next((s for s in stages[i + 1:] if _trains(s)), None)
            if later is not None:
                errors.append(ConfigError(f"stages[{i}].strip", f"{name} strips its masks, then {later.display_name} "
                                                                "trains: the zeroed weights would fill in again",
                                          f"set strip: false on {name} (the masks are then held through the "
                                          "later training), or drop the training after it"))
        if kind in QUANTIZING and quantized_by is None:
            quantized_by = name
        compressed = compressed or stage.compresses
    return errors


def _trains(stage):
    """Does `stage` run optimizer steps on the model it is given?"""
    if stage.type_name in ("finetune", "distill", "qat"):
        return (getattr(stage, "epochs", None) is None) or stage.epochs > 0
    if stage.type_name == "filter_pruning":
        return bool(getattr(stage, "finetune_epochs", 0))
    return False


def layer_name_errors(stages, model, input_shape, indices=None):
    """Layer names in skip/ratios and FLOPs targets checked against the built (untrained) model.

    `indices`: each stage's position in the config (default 0, 1, ...), for the errors' paths.
    """
    errors = []
    graph = None
    structure_changed = False
    for i, stage in zip(indices if indices is not None else range(len(stages)), stages):
        path = f"stages[{i}]"
        try:
            if stage.type_name == "filter_pruning":
                if graph is None:
                    from ..pruning.analysis import analyze

                    graph = analyze(model, input_shape)
                stage.targets(graph)  # unknown or unprunable layer names
                if not structure_changed:
                    _check_target(stage, model, graph, input_shape)
                structure_changed = True
            elif stage.type_name == "sparse_pruning":
                from ..sparsity.criteria import sparse_prunable_layers

                sparse_prunable_layers(model, stage.skip, stage.method)
            elif stage.type_name in QUANTIZING:
                from ..quant.layers import layers_to_quantize

                layers_to_quantize(model, stage.quantizable_layer_type, stage.skip_layers, stage.skip_types)
        except SlimkitError as found:
            for err in flatten([found]):
                where = getattr(err, "path", "") or ""
                message = err.message[len(where) + 2:] if where and err.message.startswith(f"{where}: ") \
                    else err.message
                errors.append(ConfigError(f"{path}.{where}" if where else path, message, err.hint))
    return errors


def _check_target(stage, model, graph, input_shape):
    """ConfigError when the largest allowed ratios cannot reach `target_flops_reduction`."""
    target = getattr(stage, "target_flops_reduction", None)
    if target is None:
        return
    from ..pruning.selection import FlopsProbe, keep_counts

    groups = stage.targets(graph).groups
    if stage.method == "uniform":
        most = stage.max_ratio
    else:
        most = max(stage.sensitivity.ratios)
    probe = FlopsProbe(model, graph, input_shape)
    reached = probe.reduction(keep_counts(groups, {g.name: most for g in groups}, stage.round_to,
                                          stage.min_channels))
    if reached + 1e-9 < target:
        raise ConfigError("target_flops_reduction", f"{target:.1%} cannot be reached: at most {reached:.1%} with "
                                                    f"every prunable group at ratio {most}",
                          "lower target_flops_reduction, skip fewer layers, lower min_channels/round_to, or allow "
                          "larger ratios (max_ratio, or larger sensitivity ratios)")
