"""Sparsity schedules: which sparsity to reach at a training step, and when to update masks.

They follow TensorFlow Model Optimization's `ConstantSparsity` and `PolynomialDecay`
(same arguments, same formula), and are small validated objects that serialise to the
mapping a config file holds:

    schedule = PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000, frequency=100)
    schedule.to_dict()   # {'type': 'polynomial_decay', 'initial_sparsity': 0.0, ...}
    SparsitySchedule.from_dict({"type": "constant", "target": 0.5})

Steps count optimizer steps: step 0 is before the first one (the engine's `on_step`
reports step 1 after the first step). Masks are updated on steps where
`should_prune(step)` is true; unlike TF-MOT, `end_step` itself is always a pruning step,
so the final sparsity is reached even when `end_step - begin_step` is not a multiple of
`frequency`.
"""

import dataclasses
from typing import ClassVar

from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.schema import Options, _join, option

SCHEDULES = Registry("schedule type", "slimkit.sparsity.SparsitySchedule")


@dataclasses.dataclass
class SparsitySchedule(Options):
    """Base of the sparsity schedules: `sparsity(step)` and `should_prune(step)`."""

    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, type_name=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if type_name:
            cls.type_name = type_name
            SCHEDULES.add(type_name, cls)

    def sparsity(self, step):
        """The target fraction of zero weights at optimizer step `step`."""
        raise NotImplementedError

    def should_prune(self, step):
        """Whether masks are recomputed at `step`."""
        begin, end = self.begin_step, self.end_step
        if step < begin or (end != -1 and step > end):
            return False
        return (step - begin) % self.frequency == 0 or step == end

    @property
    def final_sparsity(self):
        """The sparsity reached once the schedule is over."""
        raise NotImplementedError

    @property
    def last_step(self):
        """The step at which the final sparsity is first reached."""
        return self.begin_step

    def to_dict(self):
        return {"type": self.type_name, **super().to_dict()}

    @classmethod
    def from_dict(cls, data, path=""):
        """Build a schedule from `{type: constant|polynomial_decay, ...}` (type optional on a subclass)."""
        if isinstance(data, SparsitySchedule):
            return data
        if not isinstance(data, dict):
            return super().from_dict(data, path)  # raises the "expected a mapping" error
        data = dict(data)
        kind = data.pop("type", None) or cls.type_name
        if not kind:
            raise ConfigError(path, "a schedule needs a 'type'", f"valid types: {', '.join(sorted(SCHEDULES))}")
        target = SCHEDULES.find(kind, _join(path, "type"), SparsitySchedule)
        if cls.type_name and target is not cls:
            raise ConfigError(_join(path, "type"), f"{cls.__name__} cannot be built from type {kind!r}",
                              f"use SparsitySchedule.from_dict or type {cls.type_name!r}")
        return Options.from_dict.__func__(target, data, path)


def _check_steps(schedule, allow_open_end):
    end, begin = schedule.end_step, schedule.begin_step
    if end == -1 and allow_open_end:
        return
    if end < 0:
        raise ConfigError("end_step", f"{end} is not a step",
                          "use -1 (never ends)" if allow_open_end else "give the last pruning step (>= 1)")
    # A polynomial schedule divides by end - begin; a constant one may start and end on one step.
    too_early = end < begin if allow_open_end else end <= begin
    if too_early:
        raise ConfigError("end_step", f"end_step {end} must come after begin_step {begin}",
                          "the schedule runs from begin_step to end_step (optimizer steps)")


@dataclasses.dataclass
class ConstantSparsity(SparsitySchedule, type_name="constant"):
    """One target sparsity, enforced from `begin_step` on and refreshed every `frequency` steps (TF-MOT)."""

    target: float = option(0.5, "fraction of weights that are zero", ge=0, lt=1)
    begin_step: int = option(0, "first optimizer step at which masks are computed", ge=0)
    end_step: int = option(-1, "last step at which masks are recomputed; -1 = until training ends", ge=-1)
    frequency: int = option(100, "recompute masks every this many optimizer steps", ge=1)

    def check(self):
        _check_steps(self, allow_open_end=True)

    def sparsity(self, step):
        return self.target

    @property
    def final_sparsity(self):
        return self.target


@dataclasses.dataclass
class PolynomialDecay(SparsitySchedule, type_name="polynomial_decay"):
    """Sparsity rising from `initial_sparsity` to `final_sparsity` between begin and end step (TF-MOT).

    `s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** power`, with t clipped to
    [t0, t1]; masks are updated every `frequency` steps in that range.
    """

    initial_sparsity: float = option(0.0, "sparsity at begin_step", ge=0, lt=1)
    final_sparsity: float = option(0.5, "sparsity reached at end_step and kept after it", ge=0, lt=1)
    begin_step: int = option(0, "optimizer step at which pruning starts", ge=0)
    end_step: int = option(1000, "optimizer step at which final_sparsity is reached", ge=1)
    power: float = option(3.0, "exponent of the decay (3: prune fast early, slowly near the end)", gt=0)
    frequency: int = option(100, "update masks every this many optimizer steps", ge=1)

    def check(self):
        _check_steps(self, allow_open_end=False)
        if self.final_sparsity < self.initial_sparsity:
            raise ConfigError("final_sparsity", f"final_sparsity {self.final_sparsity} is below initial_sparsity "
                                                f"{self.initial_sparsity}",
                              "sparsity only grows: pruned weights are never revived")

    def sparsity(self, step):
        t0, t1 = self.begin_step, self.end_step
        progress = min(1.0, max(0.0, (step - t0) / (t1 - t0)))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power

    @property
    def last_step(self):
        return self.end_step
