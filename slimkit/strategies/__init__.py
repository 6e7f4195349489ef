"""The built-in strategies; importing this package registers their config `type`s."""

from .distillation import *  # noqa: F401,F403
from .distillation import __all__ as _distillation
from .filter_pruning import *  # noqa: F401,F403
from .filter_pruning import __all__ as _filter_pruning
from .finetune import Finetune
from .quantization import *  # noqa: F401,F403
from .quantization import __all__ as _quantization
from .sparse_pruning import *  # noqa: F401,F403
from .sparse_pruning import __all__ as _sparse_pruning

__all__ = ["Finetune", *_filter_pruning, *_sparse_pruning, *_distillation, *_quantization]
