"""Which tensors must shrink together when channels go: the traced program, the channel walk, its groups."""

from .graph import ChannelSlice, DependencyGraph, Group, group_weights
from .segments import Seg
from .trace import PARAM_VIEWS, check_forward_runs, flat_outputs, output_structure, parameter_values, trace_program

__all__ = ["Group", "ChannelSlice", "DependencyGraph", "group_weights", "Seg", "check_forward_runs", "flat_outputs",
           "output_structure", "trace_program", "PARAM_VIEWS", "parameter_values"]
