"""Structured filter pruning: criteria, dependency analysis, physical removal, sensitivity scans."""

from . import ops
from .api import PruneResult, prunable_layers, prune
from .criteria import *  # noqa: F401,F403
from .criteria import __all__ as _criteria
from .analysis import analyze
from .dependency import ChannelSlice, DependencyGraph, Group, group_weights  # noqa: F401
from .remove import remove_channels
from .selection import *  # noqa: F401,F403
from .selection import __all__ as _selection
from .sensitivity import *  # noqa: F401,F403
from .sensitivity import __all__ as _sensitivity

__all__ = ["ops", "Group", "DependencyGraph", "analyze", "remove_channels", "PruneResult", "prune", "prunable_layers",
           *_criteria, *_selection, *_sensitivity]
