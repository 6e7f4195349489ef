"""A model and two stages that tests/test_parallel.py's data-parallel runs name in their configs.

The ranks import this module by name (`parallel_helpers:...`), with tests/ on PYTHONPATH.
"""

import dataclasses
from pathlib import Path
from typing import Optional

import paddle.nn as nn

from slimkit import Strategy
from slimkit.core import parallel
from slimkit.core.schema import option


def conv_net(num_classes=10, in_channels=1, input_size=8):
    """Two convs and a classifier, no batch norm: per-rank batch statistics would make ranks differ from one process."""
    return nn.Sequential(
        nn.Conv2D(in_channels, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2D(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(), nn.Linear(16 * (input_size // 2) ** 2, num_classes))


@dataclasses.dataclass
class CountEval(Strategy):
    """Records how many test samples one evaluation counted, and the processes it ran on."""

    compresses = False

    def apply(self, model, ctx):
        ctx.metrics["evaluated_samples"] = ctx.engine.evaluate(model)["samples"]
        ctx.metrics["processes"] = parallel.world_size()
        return model


@dataclasses.dataclass
class FailOnRank(Strategy):
    """Raises on rank `rank` (unless the file `unless` exists), as a bug on one process would."""

    compresses = False

    rank: int = option(1, "the rank that fails")
    unless: Optional[str] = option(None, "no failure once this file exists")

    def apply(self, model, ctx):
        if parallel.rank() == self.rank and not (self.unless and Path(self.unless).exists()):
            raise RuntimeError(f"deliberate failure on rank {self.rank}")
        return model
