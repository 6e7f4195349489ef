"""The objective a pipeline trains and measures with: `build_task(task, data)`, the one place it is chosen.

Labelled data gets the task's Objective (slimkit.train.tasks), its labels checked against it
before any work (slimkit.train.checks); data without labels gets the agreement objective
(slimkit.train.reference), the original model being the reference.
"""

from .checks import check_labels
from .reference import AgreementObjective
from .tasks import Objective, TaskConfig


def build_task(config=None, data=None, label_smoothing=0.0, reference=None, input_shape=None):
    """The Objective of a TaskConfig (or its fields as a dict) on a DataBundle, its labels checked against it.

    Data without labels gets the agreement objective: `reference` (the original model) gives
    the labels, its outputs on each batch (slimkit.train.reference).
    """
    if isinstance(config, Objective):
        return config
    config = config if isinstance(config, TaskConfig) else TaskConfig.from_dict(config or {}, "task")
    if data is not None and not data.labelled:
        shape = list(input_shape) if input_shape else [1, *data.input_shape]
        return AgreementObjective(config, reference, shape)
    objective = Objective(config, getattr(data, "num_classes", 0), getattr(data, "task", "classification"),
                          label_smoothing)
    objective.classes_inferred = bool(getattr(data, "classes_inferred", False))
    if data is not None:
        check_labels(objective, data)
    return objective
