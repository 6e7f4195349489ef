"""Plain training as a stage: the baseline training, or recovery after compression."""

import dataclasses
from typing import Optional

from ..core.schema import option
from .base import Strategy


@dataclasses.dataclass
class Finetune(Strategy, type_name="finetune"):
    """Train the current model with the pipeline's engine, on the task's loss (`task.loss`)."""

    compresses = False

    epochs: Optional[int] = option(None, "epochs; null = train.epochs", ge=0)
    lr: Optional[float] = option(None, "peak learning rate; null = train.lr", gt=0)

    @property
    def trains(self):
        return self.epochs is None or self.epochs > 0

    def apply(self, model, ctx):
        history = ctx.engine.train(model, epochs=ctx.hyper("epochs", self.epochs), lr=ctx.hyper("lr", self.lr),
                                   desc=ctx.stage_name)
        if history:
            ctx.metrics["train_loss"] = round(history[-1]["loss"], 5)
        return model
