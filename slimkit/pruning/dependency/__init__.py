"""Which tensors must shrink together when channels go: the model traced and its channels followed."""

from .walk import (  # noqa: F401
                   _PARAM_VIEWS,
                   ChannelSlice,
                   DependencyGraph,
                   Group,
                   _ChannelTracer,
                   _check_forward_runs,
                   _trace,
                   analyze,
                   flat_outputs,
                   group_weights,
                   output_structure,
)

__all__ = ["Group", "ChannelSlice", "DependencyGraph", "analyze", "group_weights", "flat_outputs",
           "output_structure"]
