"""Training and evaluation loops, kept apart from the compression algorithms.

Strategies never write a loop of their own: they call `engine.train(model, ...)` with
an optional loss (distillation) and per-step callback (sparsity masks, schedules), and
`engine.evaluate(model, split)`. Replace the engine to plug in your own loop: any object
with the four methods of `EngineProtocol` works (`Pipeline(..., engine=yours)`); the
hyperparameters strategies need come from the stage's `Context`, not from the engine, and so
do the task's loss and metric (`Context.task`). `check_engine` checks the contract up front:
the four methods, callable the way slimkit calls them (`CALLS`).

Labels reach the loss as the data gives them (a tensor, or a tuple/list/dict of tensors);
for data without labels they are the original model's outputs on the batch (the task's
`targets`). A loss or weights that become NaN or inf stop the training with a
TrainingError naming the run (the stage) and the step.
"""

import dataclasses
import inspect
import math
import warnings
from typing import Iterator, Literal, Optional, Protocol, runtime_checkable

import paddle
from tqdm.auto import tqdm

from ..core import parallel
from ..core.errors import ConfigError, TrainingError
from ..core.schema import Options, option
from ..core.seeding import set_seed  # noqa: F401  (kept importable from here)
from ..core.surgery import eval_mode, model_digest
from ..data.labels import map_labels
from .metrics import add_counts, counts, topk_hits  # noqa: F401  (topk_hits kept importable from here)
from .objective import build_task


@dataclasses.dataclass
class TrainConfig(Options):
    """How models are trained and evaluated (config block `train`); stages may override epochs and lr."""

    epochs: int = option(5, "default epochs of a training stage", ge=0)
    batch_size: int = option(64, "training batch size of one process (a data-parallel run of N processes "
                                 "trains on global batches of N x batch_size)", ge=1)
    eval_batch_size: int = option(256, "evaluation batch size (of one process)", ge=1)
    optimizer: Literal["momentum", "sgd", "adam", "adamw"] = option("momentum", "optimizer")
    lr: float = option(0.05, "peak learning rate", gt=0)
    momentum: float = option(0.9, "momentum (momentum optimizer only)", ge=0, lt=1)
    weight_decay: float = option(5e-4, "L2 weight decay", ge=0)
    schedule: Literal["cosine", "constant", "step"] = option(
        "cosine", "learning-rate schedule over a stage's steps (`step`: x0.1 at 50% and 75%)")
    warmup_epochs: float = option(0.0, "linear warm-up at the start of each stage", ge=0)
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy loss", ge=0, lt=1)
    seed: int = option(0, "seed of initialisation order, shuffling and augmentation")
    max_steps_per_epoch: Optional[int] = option(None, "cap on optimizer steps per epoch (quick runs)", gt=0)
    progress: Optional[bool] = option(None, "show tqdm progress bars; null = only on a terminal")


@runtime_checkable
class EngineProtocol(Protocol):
    """Everything a strategy asks of an engine: exactly these four methods (NNI's Evaluator idea).

    `loss_fn(model, images, labels) -> (loss, logits)` replaces the default loss;
    `on_step(step, model)` runs after every optimizer step (masks, schedules). `None` for
    epochs/lr means the engine's own default (strategies pass the Context's values).
    """

    def train(self, model, epochs=None, lr=None, loss_fn=None, on_step=None, desc="train") -> list:
        """Train `model` in place; one dict per epoch (at least `loss`)."""

    def evaluate(self, model, split="test", max_batches=None) -> dict:
        """The task's metrics of `model` on a split: {metric name: value} (slimkit.train.tasks; e.g. `top1`, `top5`
        for classification, `miou`, `pixel_acc` for segmentation), plus `loss` where the engine computes it."""

    def batches(self, split, batch_size=None, shuffle=False, seed=0, max_batches=None) -> Iterator:
        """(images, labels) paddle tensors of a split, no augmentation."""

    def steps_per_epoch(self) -> int:
        """Optimizer steps one epoch of `train` takes (schedules count in steps)."""


REQUIRED = ("train", "evaluate", "batches", "steps_per_epoch")
OPTIONAL = ("data", "take_history")  # read when present: the data of a pipeline given none, the per-epoch history
# How slimkit calls each method (the fullest form): an engine must accept these arguments.
CALLS = {"train": ((None,), {"epochs": 1, "lr": 0.1, "loss_fn": None, "on_step": None, "desc": "train"}),
         "evaluate": ((None, "test"), {"max_batches": 1}),
         "batches": (("train", 1), {"shuffle": False, "seed": 0, "max_batches": 1}),
         "steps_per_epoch": ((), {})}
SIGNATURES = {"train": "train(model, epochs=None, lr=None, loss_fn=None, on_step=None, desc='train')",
              "evaluate": "evaluate(model, split='test', max_batches=None)",
              "batches": "batches(split, batch_size=None, shuffle=False, seed=0, max_batches=None)",
              "steps_per_epoch": "steps_per_epoch()"}


def missing_methods(engine):
    """Names of EngineProtocol methods `engine` lacks (empty when it implements the contract)."""
    return [name for name in REQUIRED if not callable(getattr(engine, name, None))]


def check_engine(engine):
    """`engine` itself if it implements EngineProtocol; otherwise a ConfigError naming what it lacks."""
    missing = missing_methods(engine)
    if missing:
        raise ConfigError("engine", f"{type(engine).__name__} lacks {', '.join(missing)}",
                          "an engine implements train, evaluate, batches and steps_per_epoch "
                          "(slimkit.EngineProtocol), or subclass slimkit.Engine")
    for name, (args, kwargs) in CALLS.items():
        try:
            inspect.signature(getattr(engine, name)).bind(*args, **kwargs)
        except TypeError as err:
            raise ConfigError("engine", f"{type(engine).__name__}.{name} cannot be called as slimkit calls it "
                                        f"({err})", f"give it the signature {SIGNATURES[name]}") from None
        except ValueError:  # no signature to read (a builtin): called as it is
            continue
    return engine


def resolve_train_config(train=None, engine=None):
    """The run's TrainConfig: `train` (a TrainConfig or mapping), else a slimkit Engine's own, else defaults."""
    if isinstance(train, TrainConfig):
        return train
    if train:
        return TrainConfig.from_dict(train, "train")
    if isinstance(engine, Engine):
        return engine.config
    return TrainConfig()


class Engine:
    """Runs training and evaluation for every stage of a pipeline on one dataset.

    `train(model, epochs, lr, loss_fn, on_step)`: `loss_fn(model, images, labels)`
    returns `(loss, logits)`; `on_step(step, model)` runs after every optimizer step.
    `evaluate(model, split, max_batches)` returns the task's metrics (top1/top5 fractions for
    classification, miou/pixel_acc for segmentation, top1_agreement/pixel_agreement for data
    without labels), loss, samples. `task` (a TaskConfig, its fields as a dict, an Objective,
    or None for the dataset's own task) gives the default loss and the metric; `reference`
    is the original model, whose outputs are the labels of data without labels.
    """

    def __init__(self, data, config=None, task=None, reference=None):
        if data is None:
            raise ConfigError("data", "the engine has no data", "pass a DataBundle, e.g. slimkit.to_bundle((X, y))")
        self.data = data
        self.config = config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))
        self.task = build_task(task, data, self.config.label_smoothing, reference)
        self.history = []  # per-epoch records of every train() call, until take_history()

    def take_history(self):
        """The per-epoch records (loss, train top-1, lr) since the last call, and forget them."""
        taken, self.history = self.history, []
        return taken

    # --- batches ------------------------------------------------------------------------
    def batches(self, split="train", batch_size=None, shuffle=False, seed=0, augment=False, max_batches=None):
        """Yield (images, labels) paddle tensors from a split ('train', 'val', 'test').

        The whole split on every process, also in a data-parallel run: what strategies read
        here (calibration, Taylor scores) must be the same on every rank.
        """
        return self._batches(getattr(self.data, split), batch_size, shuffle, seed, augment, max_batches)

    def _batches(self, dataset, batch_size=None, shuffle=False, seed=0, augment=False, max_batches=None):
        size = batch_size or self.config.eval_batch_size
        if hasattr(dataset, "batches"):
            source = dataset.batches(size, shuffle=shuffle, seed=seed, augment=augment, drop_last=shuffle)
        else:
            source = paddle.io.DataLoader(dataset, batch_size=size, shuffle=shuffle, drop_last=shuffle)
        for i, batch in enumerate(source):
            if max_batches is not None and i >= max_batches:
                break
            yield self._tensors(batch)

    def _tensors(self, batch):
        """(images, targets) tensors of a batch: its labels, or the reference outputs when it has none."""
        images, labels = _split(batch)
        # A user's Dataset comes through paddle's DataLoader, which already yields tensors.
        images = _tensor(images)
        return images, self.task.targets(images, map_labels(_tensor, labels))

    def steps_per_epoch(self, batch_size=None):
        """Optimizer steps of one epoch: global batches (batch_size x processes) in the training split."""
        size = (batch_size or self.config.batch_size) * parallel.world_size()
        steps = len(self.data.train) // size
        cap = self.config.max_steps_per_epoch
        return max(1, min(steps, cap) if cap else steps)

    # --- training -----------------------------------------------------------------------
    def make_optimizer(self, model, lr, total_steps):
        cfg = self.config
        schedule = _lr_schedule(cfg, lr, total_steps, self.steps_per_epoch())
        params = [p for p in model.parameters() if not p.stop_gradient]
        decay = paddle.regularizer.L2Decay(cfg.weight_decay) if cfg.weight_decay else None
        if cfg.optimizer == "momentum":
            return paddle.optimizer.Momentum(schedule, cfg.momentum, parameters=params, weight_decay=decay)
        if cfg.optimizer == "sgd":
            return paddle.optimizer.SGD(schedule, parameters=params, weight_decay=decay)
        if cfg.optimizer == "adam":
            return paddle.optimizer.Adam(schedule, parameters=params, weight_decay=decay)
        return paddle.optimizer.AdamW(schedule, parameters=params, weight_decay=cfg.weight_decay)

    def train(self, model, epochs=None, lr=None, loss_fn=None, on_step=None, desc="train"):
        """Train `model` in place; returns per-epoch history (loss, train top-1)."""
        cfg = self.config
        epochs = cfg.epochs if epochs is None else epochs
        lr = cfg.lr if lr is None else lr
        if epochs == 0:
            return []
        steps = self.steps_per_epoch()
        optimizer = self.make_optimizer(model, lr, epochs * steps)
        loss_fn = loss_fn or self.task.loss_fn
        parallel.check_equal(f"the weights before {desc}", lambda: model_digest(model))
        paddle.seed(cfg.seed + parallel.rank())  # dropout differs per rank; data order and init agree
        model.train()
        try:
            with warnings.catch_warnings():
                # BatchNorm warns on every training call that it tracks global statistics.
                warnings.filterwarnings("ignore", message="When training, we now always track")
                history = self._epochs(model, epochs, steps, optimizer, loss_fn, on_step, desc)
        finally:
            model.eval()
        parallel.sync_state(model, f"the weights after {desc}")
        self.history.extend({"run": desc, **entry} for entry in history)
        return history

    def _train_batches(self, seed, steps):
        """This process's training batches of one epoch: all of them, or its rows of every global batch."""
        size, n = self.config.batch_size, parallel.world_size()
        dataset = self.data.train
        if n > 1 and not hasattr(dataset, "batches"):  # a user's Dataset: paddle's own sharding
            loader = paddle.io.DataLoader(dataset, batch_sampler=parallel.distributed_sampler(dataset, size, True,
                                                                                              seed))
            return (self._tensors(batch) for _, batch in zip(range(steps), loader))
        batches = self._batches(dataset, size * n, shuffle=True, seed=seed, augment=True, max_batches=steps)
        if n == 1:
            return batches
        # One permutation and one augmentation draw per global batch, the same on every rank.
        return ((parallel.batch_share(x, size), map_labels(lambda t: parallel.batch_share(t, size), y))
                for x, y in batches)

    def _epochs(self, model, epochs, steps, optimizer, loss_fn, on_step, desc):
        cfg = self.config
        history, step = [], 0
        params = model.parameters()
        # Only rank 0 shows progress; `progress: null` shows bars only on a terminal.
        disable = (None if cfg.progress is None else not cfg.progress) if parallel.is_main() else True
        for epoch in range(epochs):
            samples, total, correct, loss_sum = 0, 0, 0, 0.0
            lr = optimizer.get_lr()
            bar = tqdm(self._train_batches(cfg.seed * 1000 + epoch, steps),
                       total=steps, desc=f"{desc} {epoch + 1}/{epochs}", leave=False,
                       disable=disable, dynamic_ncols=True)
            epoch_line = cfg.progress is None and bar.disable and parallel.is_main()  # not a terminal: a line instead
            for images, labels in bar:
                loss, logits = loss_fn(model, images, labels)
                value = _finite_loss(loss, desc, step + 1, epoch + 1)  # checked before the step it would take
                loss.backward()
                parallel.average_gradients(params)  # every rank takes the same step
                optimizer.step()
                optimizer.clear_grad()
                if isinstance(optimizer._learning_rate, paddle.optimizer.lr.LRScheduler):
                    optimizer._learning_rate.step()
                step += 1
                if on_step is not None:
                    on_step(step, model)
                n = int(images.shape[0])
                samples += n
                loss_sum += value * n
                hits, counted = self.task.correct(logits, labels)
                correct, total = correct + hits, total + counted
                bar.set_postfix(loss=f"{loss_sum / samples:.4f}", acc=f"{correct / max(total, 1):.3f}")
            check_finite_weights(model, f"training {desc}", f"by step {step} (end of epoch {epoch + 1})")
            samples, total, correct, loss_sum = parallel.all_sum([samples, total, correct, loss_sum])
            history.append({"epoch": epoch + 1, "loss": loss_sum / max(samples, 1),
                            "train_top1": correct / total if total else None, "lr": lr})
            if epoch_line:
                print(epoch_progress(desc, epoch + 1, epochs, history[-1]), flush=True)
        return history

    # --- evaluation ---------------------------------------------------------------------
    @paddle.no_grad()
    def evaluate(self, model, split="test", max_batches=None):
        """The task's metrics (e.g. top1/top5 fractions) and mean loss of `model` on a split.

        In a data-parallel run each rank evaluates its contiguous share of the samples (no
        padding) and the counts are added up: every sample counts exactly once.
        """
        metric, total, loss_sum = self.task.metric(), 0, 0.0
        with eval_mode(model):
            for images, labels in self._eval_batches(split, max_batches):
                logits = self.task.select(model(images))
                loss_sum += self.task.eval_loss(logits, labels).item() * int(images.shape[0])
                metric.update(logits.numpy(), map_labels(lambda t: t.numpy(), labels))
                total += int(images.shape[0])
        if parallel.active():
            shares = parallel.all_gather({"metric": counts(metric), "loss": loss_sum, "total": total})
            metric = self.task.metric()
            for share in shares:
                add_counts(metric, share["metric"])
            loss_sum, total = sum(s["loss"] for s in shares), sum(s["total"] for s in shares)
        return {**metric.result(), "loss": loss_sum / max(total, 1), "samples": total}

    def _eval_batches(self, split, max_batches):
        """The batches this process evaluates: all, or its contiguous share of those a single process would."""
        size, dataset = self.config.eval_batch_size, getattr(self.data, split)
        if not parallel.active():
            return self._batches(dataset, size, max_batches=max_batches)
        count = len(dataset) if max_batches is None else min(len(dataset), max_batches * size)
        start, stop = parallel.shard_range(count)
        part = dataset.rows(start, stop) if hasattr(dataset, "rows") else paddle.io.Subset(dataset, range(start, stop))
        return self._batches(part, size)


def _tensor(value):
    return value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)


def _split(batch):
    """(images, labels or None) of a batch: a dataset's own (images, labels), or a DataLoader's list."""
    if isinstance(batch, tuple) and len(batch) == 2:
        return batch
    parts = list(batch) if isinstance(batch, (list, tuple)) else [batch]
    return parts[0], (None if len(parts) == 1 else parts[1] if len(parts) == 2 else parts[1:])


_DIVERGED_HINT = ("lower the learning rate (train.lr, or the stage's lr), check the data and a loss of your own; "
                  "the model you gave is unchanged")


def _finite_loss(loss, desc, step, epoch):
    """The loss as a number; TrainingError when it is NaN or inf."""
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingError(f"training {desc} diverged: the loss is {value} at step {step} (epoch {epoch})",
                            _DIVERGED_HINT)
    return value


def nonfinite_tensors(model):
    """Names of the parameters and buffers of `model` holding NaN or inf."""
    named = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if b is not None]
    return [name for name, t in named if t.dtype in (paddle.float32, paddle.float64, paddle.float16)
            and not bool(paddle.isfinite(t).all())]


def check_finite_weights(model, what, when):
    """TrainingError naming the tensors of `model` that hold NaN or inf (after `what`, `when`)."""
    bad = nonfinite_tensors(model)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise TrainingError(f"{what} diverged: {', '.join(bad[:3])}{more} hold NaN or inf {when}", _DIVERGED_HINT)


def epoch_progress(desc, epoch, epochs, entry):
    """The one line an epoch prints when output is not a terminal (logs, CI, nohup)."""
    accuracy = f", train top-1 {entry['train_top1']:.2%}" if entry.get("train_top1") is not None else ""
    return f"  {desc} epoch {epoch}/{epochs}: loss {entry['loss']:.4f}{accuracy}, lr {entry['lr']:.4g}"


def _lr_schedule(cfg, lr, total_steps, steps_per_epoch):
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "cosine":
        schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr, T_max=max(1, total_steps - warmup))
    elif cfg.schedule == "step":
        bounds = [max(1, int(total_steps * 0.5)), max(2, int(total_steps * 0.75))]
        schedule = paddle.optimizer.lr.PiecewiseDecay(bounds, [lr, lr * 0.1, lr * 0.01])
    else:
        schedule = paddle.optimizer.lr.LambdaDecay(lr, lambda _: 1.0)
    if warmup:
        schedule = paddle.optimizer.lr.LinearWarmup(schedule, warmup, 0.0, lr)
    return schedule

