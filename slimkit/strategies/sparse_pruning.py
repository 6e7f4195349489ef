"""Unstructured (weight) and neuron pruning as a stage: masks, an optional schedule, training.

    SparsePruning(sparsity=0.8, epochs=3, skip=["features.0"])
    SparsePruning(schedule={"type": "polynomial_decay", "final_sparsity": 0.9, "end_step": 2000}, epochs=10)

Zeros do not make a dense model smaller or faster by themselves; they pay off once the
weights are compressed or stored sparsely. `measure` therefore writes both and reports
their sizes beside the dense `model.pdparams`.
"""

import dataclasses
import zipfile
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import paddle

from ..core.errors import ConfigError
from ..core.schema import option
from ..core.surgery import capture, restore
from ..models.checkpoint import ARCH, WEIGHTS, load_into, read_architecture
from ..sparsity.criteria import get_sparsity_criterion, sparse_prunable_layers
from ..sparsity.masks import (MASKED, apply_masks, mask_name, masked_layers, remove_masks, sparsify, sparsity_stats,
                              strip_masks)
from ..sparsity.schedules import SparsitySchedule
from .base import Strategy

__all__ = ["SparsePruning", "write_sparse_encoding", "read_sparse_encoding"]

ZIPPED = f"{WEIGHTS}.zip"
SPARSE = "model.sparse.npz"


@dataclasses.dataclass
class SparsePruning(Strategy, type_name="sparse_pruning"):
    """Zero a share of the weights (or of Linear neurons) with masks, then train with the masks held.

    Give `sparsity` (pruned once, before training) or `schedule` (masks updated during
    training). Pruned weights stay exactly zero through training; with `strip` (default)
    the masks are folded into the weights at the end and the model is a plain model again.
    """

    method: str = option(
        "magnitude", "`magnitude`: zero the smallest |w|; `random`: zero weights at random (seeded); "
                     "`neuron`: zero whole output neurons of Linear layers (weight columns with the "
                     "smallest L2 norm, and their bias entries); or a registered SparsityCriterion's name "
                     "or `package.module:Class`")
    scope: Literal["layer", "global"] = option(
        "layer", "`layer`: every layer reaches the sparsity; `global`: one threshold over all pruned "
                 "layers (the total count is exact, layers differ)")
    sparsity: Optional[float] = option(
        None, "one-shot target: share of weights (neurons) set to zero before training, "
              "exactly round(sparsity * n); exclusive with schedule", ge=0, lt=1)
    schedule: Optional[SparsitySchedule] = option(
        None, "sparsity schedule during training: `{type: polynomial_decay, initial_sparsity, final_sparsity, "
              "begin_step, end_step, power, frequency}` or `{type: constant, target, begin_step, end_step, "
              "frequency}` (steps are optimizer steps of this stage); exclusive with sparsity")
    epochs: Optional[int] = option(None, "training epochs with the masks held; null = train.epochs", ge=0)
    lr: Optional[float] = option(None, "peak learning rate of that training; null = train.lr", gt=0)
    skip: list[str] = option(default_factory=list, doc="layer names left dense (e.g. the first conv, "
                                                       "the classifier); a parent name skips all its layers")
    strip: bool = option(True, "fold the masks into the weights and remove them at the end (false keeps "
                               "`weight_mask` buffers, e.g. for a later sparse_pruning stage)")
    seed: int = option(0, "seed of method: random")

    traces = True

    @property
    def trains(self):
        return self.epochs is None or self.epochs > 0

    def preflight(self, model, input_shape, as_built=True):
        sparse_prunable_layers(model, self.skip, self.method)  # unknown layer names, with the closest one
        return []

    def order_errors(self, later):
        """Stripped masks, then a stage that trains: the zeroed weights would fill in again."""
        training = next((s for s in later if s.trains), None) if self.strip else None
        if training is None:
            return []
        name = self.display_name
        return [ConfigError("strip", f"{name} strips its masks, then {training.display_name} trains: the zeroed "
                                     "weights would fill in again",
                            f"set strip: false on {name} (the masks are then held through the later training), "
                            "or drop the training after it")]

    def check(self):
        get_sparsity_criterion(self.method)  # an unknown name fails here, naming the closest registered one
        if (self.sparsity is None) == (self.schedule is None):
            both = self.sparsity is not None
            raise ConfigError("sparsity", "give either sparsity or schedule, not both" if both else
                              "give a sparsity (one-shot) or a schedule",
                              "e.g. sparsity: 0.8, or schedule: {type: polynomial_decay, final_sparsity: 0.9, "
                              "end_step: 1000}")

    @property
    def parsed_schedule(self):
        """The schedule (kept for code written when `schedule` was stored as a mapping)."""
        return self.schedule

    @property
    def target_sparsity(self):
        return self.sparsity if self.schedule is None else self.schedule.final_sparsity

    def apply(self, model, ctx):
        layers = sparse_prunable_layers(model, self.skip, self.method)  # ModelError before any change
        engine = ctx.engine
        epochs = ctx.hyper("epochs", self.epochs)
        schedule = self.schedule
        if schedule is not None:
            steps = epochs * engine.steps_per_epoch() if epochs else 0
            if steps < schedule.last_step:
                raise ConfigError("schedule.end_step" if schedule.last_step != schedule.begin_step else
                                  "schedule.begin_step",
                                  f"the schedule reaches its final sparsity at step {schedule.last_step}, but this "
                                  f"stage trains {steps} steps ({epochs} epochs x {engine.steps_per_epoch()})",
                                  "lower end_step, or raise epochs")
        snapshot = capture(model)
        had_masks = set(masked_layers(model))
        updater = _MaskUpdater(self, layers, schedule)
        try:
            if schedule is None:
                updater.prune(model, self.sparsity)
            elif schedule.should_prune(0):
                updater.prune(model, schedule.sparsity(0))
            history = engine.train(model, epochs=epochs, lr=ctx.hyper("lr", self.lr), on_step=updater,
                                   desc=ctx.stage_name)
            stats = sparsity_stats(model, layers)
            if self.strip:
                strip_masks(model)
        except BaseException:
            remove_masks(model, set(masked_layers(model)) - had_masks)
            restore(model, snapshot)
            raise
        self._record(ctx, stats, updater, history)
        return model

    def _record(self, ctx, stats, updater, history):
        ctx.metrics["target_sparsity"] = self.target_sparsity
        ctx.metrics["sparsity"] = stats["sparsity"]
        ctx.metrics["zero_weights"] = stats["zeros"]
        ctx.metrics["pruned_layer_weights"] = stats["weights"]
        ctx.metrics["model_sparsity"] = stats["model_sparsity"]
        ctx.metrics["layer_sparsity"] = stats["layers"]
        ctx.metrics["mask_updates"] = updater.updates
        if updater.threshold is not None:
            ctx.metrics["threshold"] = updater.threshold
        if history:
            ctx.metrics["train_loss"] = round(history[-1]["loss"], 5)
        if self.skip:
            ctx.note(f"left dense: {', '.join(self.skip)}", "skipped")
        if get_sparsity_criterion(self.method).neurons:
            ctx.note("neuron pruning zeroes whole outputs of the layer types that allow it (Linear); conv layers "
                     "are left dense")

    # --- checkpoints ----------------------------------------------------------------------
    def restore(self, model, folder, ctx):
        """Load the stage's weights; mask buffers saved with `strip: false` are recreated first."""
        folder = Path(folder)
        arch = read_architecture(folder) if (folder / ARCH).is_file() else {"layers": {}}
        own = dict(model.named_sublayers(include_self=True))
        added = set()
        for prefix, info in arch["layers"].items():
            layer = own.get(prefix)
            for name, shape in info["tensors"].items():
                if layer is not None and name in {mask_name(p) for p in MASKED} and layer._buffers.get(name) is None:
                    layer.register_buffer(name, paddle.ones(shape), persistable=True)
                    added.add(prefix)
        try:
            return load_into(model, folder)
        except BaseException:
            remove_masks(model, added)
            raise

    def measure(self, model, ctx, report):
        """Add measured compressed sizes: deflate of model.pdparams, and a bitmap + values encoding."""
        folder = Path(ctx.out_dir)
        dense = folder / WEIGHTS
        with zipfile.ZipFile(folder / ZIPPED, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            archive.write(dense, WEIGHTS)
        dense_bytes = dense.stat().st_size
        zip_bytes = (folder / ZIPPED).stat().st_size
        sparse_bytes = write_sparse_encoding(paddle.load(str(dense)), folder / SPARSE)
        report.extra.update({
            "dense_bytes": dense_bytes,
            "zip_bytes": zip_bytes, "zip_ratio": round(zip_bytes / dense_bytes, 4),
            "sparse_bytes": sparse_bytes, "sparse_ratio": round(sparse_bytes / dense_bytes, 4),
        })


class _MaskUpdater:
    """The engine's `on_step`: recompute masks on schedule steps, re-apply them after every step."""

    def __init__(self, stage, layers, schedule):
        self.stage, self.layers, self.schedule = stage, layers, schedule
        self.updates = 0
        self.threshold = None

    def prune(self, model, sparsity):
        stats = sparsify(model, sparsity, self.stage.method, self.stage.scope, seed=self.stage.seed,
                         layers=self.layers)
        self.threshold = stats["threshold"]
        self.updates += 1

    def __call__(self, step, model):
        if self.schedule is not None and self.schedule.should_prune(step):
            self.prune(model, self.schedule.sparsity(step))
        apply_masks(model)  # also masks this stage does not update (an earlier stage with strip: false)


# --- sparse storage ------------------------------------------------------------------------
def write_sparse_encoding(state, path):
    """Write a state dict as bitmap + non-zero values where that is smaller than dense; returns bytes written.

    Each float tensor with enough zeros is stored as `<key>.bits` (np.packbits of the
    non-zero pattern, 1 bit per weight), `<key>.values` (the non-zeros in order) and
    `<key>.shape`; other tensors as they are. `read_sparse_encoding` restores it exactly.
    """
    arrays = {}
    for key, value in state.items():
        value = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
        nonzero = value != 0
        sparse_size = (value.size + 7) // 8 + int(nonzero.sum()) * value.itemsize
        if np.issubdtype(value.dtype, np.floating) and value.ndim and sparse_size < value.nbytes:
            arrays[f"{key}.bits"] = np.packbits(nonzero.ravel())
            arrays[f"{key}.values"] = value[nonzero]
            arrays[f"{key}.shape"] = np.asarray(value.shape, dtype=np.int64)
        else:
            arrays[key] = value
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path.stat().st_size


def read_sparse_encoding(path):
    """The state dict (numpy arrays) written by `write_sparse_encoding`."""
    out = {}
    with np.load(path) as data:
        names = set(data.files)
        for name in names:
            if name.endswith(".bits"):
                key = name[:-len(".bits")]
                shape = tuple(data[f"{key}.shape"])
                values = data[f"{key}.values"]
                nonzero = np.unpackbits(data[name], count=int(np.prod(shape))).astype(bool)
                dense = np.zeros(nonzero.size, dtype=values.dtype)
                dense[nonzero] = values
                out[key] = dense.reshape(shape)
            elif not name.endswith((".values", ".shape")):
                out[name] = data[name]
    return out
