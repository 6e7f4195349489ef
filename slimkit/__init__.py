"""slimkit: make PaddlePaddle models smaller and faster, and measure what you got.

    import slimkit
    from slimkit import Pipeline, Finetune
    data = slimkit.load_dataset(name="digits")
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    reports = Pipeline(model, data, stages=[Finetune(epochs=5)]).run()

The top level holds what a script needs: the pipeline and its parts, models and data,
measurement, errors, the built-in strategies and the one-call pruning functions. The
algorithms' building blocks live in their subpackages: `slimkit.pruning`,
`slimkit.sparsity`, `slimkit.distill`, `slimkit.quant`.
"""

import warnings

from . import _paths
from . import compat  # noqa: F401  (the Paddle/PaddleSlim workarounds; importing it changes nothing)
from ._version import __version__
from .core.errors import ConfigError, DataError, ModelError, ResumeError, SlimkitError
from .data import DataBundle, DataConfig, load_dataset, to_bundle
from .exported import from_inference
from .models import ModelConfig, available_models, build_model, save_model
from .pruning import prunable_layers, prune, sensitive
from .report import Note, ReportConfig, StageReport, count_flops, count_params, measure_latency
from .run.loading import load_model
from .run.pipeline import Pipeline
from .sparsity import sparsify
from .strategies import PTQ, QAT, Distillation, FilterPruning, Finetune, SparsePruning
from .strategies.base import Context, Strategy
from .train.engine import Engine, EngineProtocol, TrainConfig

__all__ = ["__version__", "Pipeline", "Strategy", "Context", "Engine", "EngineProtocol", "TrainConfig",
           "StageReport", "Note", "ReportConfig", "DataConfig", "DataBundle", "ModelConfig", "load_dataset",
           "to_bundle", "build_model", "from_inference", "available_models", "save_model", "load_model",
           "count_flops", "count_params", "measure_latency", "SlimkitError", "ConfigError", "DataError",
           "ModelError", "ResumeError", "Finetune", "FilterPruning", "SparsePruning", "Distillation", "QAT", "PTQ",
           "prune", "prunable_layers", "sensitive", "sparsify"]


_paths.install()  # old module paths (slimkit.engine, slimkit.pipeline, ...) still import


def __getattr__(name):
    # Names slimkit's top level used to export are still found, in their subpackage, with a
    # warning naming where they live now; scripts written against the old top level keep running.
    # A module that moved (slimkit.pipeline -> slimkit.run.pipeline) is found at its old name too.
    if _paths.new_path(f"{__name__}.{name}"):
        return _paths.resolve(f"{__name__}.{name}")
    from . import distill, pruning, quant, sparsity, strategies

    for package in (pruning, sparsity, distill, quant, strategies):
        if name in package.__all__:
            warnings.warn(f"slimkit.{name} moved to {package.__name__}.{name}", DeprecationWarning, stacklevel=2)
            return getattr(package, name)
    raise AttributeError(f"module 'slimkit' has no attribute {name!r}")
