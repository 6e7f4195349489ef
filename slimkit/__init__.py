"""slimkit: make PaddlePaddle models smaller and faster, and measure what you got.

    import slimkit
    from slimkit import Pipeline, Finetune
    data = slimkit.load_dataset(name="digits")
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    reports = Pipeline(model, data, stages=[Finetune(epochs=5)]).run()
"""

from . import compat  # noqa: F401  (patches paddleslim/numpy before anything else runs)
from ._version import __version__
from .checkpoint import load_model, save_model
from .data import DataBundle, DataConfig, load_dataset
from .data_sources import to_bundle
from .engine import Engine, TrainConfig
from .errors import ConfigError, DataError, ModelError, ResumeError, SlimkitError
from .measure import count_flops, count_params, measure_latency
from .models import ModelConfig, available_models, build_model
from .pipeline import Pipeline
from .pruning import *  # noqa: F401,F403
from .pruning import __all__ as _pruning
from .sparsity import *  # noqa: F401,F403
from .sparsity import __all__ as _sparsity
from .distill import *  # noqa: F401,F403
from .distill import __all__ as _distill
from .quant import *  # noqa: F401,F403
from .quant import __all__ as _quant
from .report import ReportConfig, StageReport
from .strategies import *  # noqa: F401,F403
from .strategies import __all__ as _strategies
from .strategy import Context, Strategy

__all__ = ["__version__", "Pipeline", "Strategy", "Context", "Engine", "TrainConfig", "StageReport",
           "ReportConfig", "DataConfig", "DataBundle", "ModelConfig", "load_dataset", "to_bundle", "build_model",
           "available_models", "save_model", "load_model", "count_flops", "count_params", "measure_latency",
           "SlimkitError", "ConfigError", "DataError", "ModelError", "ResumeError",
           *_strategies, *_pruning, *_sparsity, *_distill, *_quant]
