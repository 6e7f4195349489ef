"""A scripted machine for timing tests: a fake clock that the fake runners advance, with seeded noise.

Each run of a runner costs `ms` of CPU time times (1 + noise * a standard normal draw); with
probability `preempt` other work holds the core during the run, which adds wall time (as
much again as the run, times a uniform draw) but no CPU time. Everything is seeded, so a
test sees the same "measurements" every time, and no test depends on the real machine.
"""

import os

import numpy as np

from slimkit.report.timing import Clock


class Machine:
    def __init__(self, noise=0.0, preempt=0.0, seed=0):
        self.noise, self.preempt = noise, preempt
        self.rng = np.random.RandomState(seed)
        self.wall = self.cpu = 0.0
        self.calls = {}

    def clock(self):
        return Clock(wall=lambda: self.wall, cpu=lambda: self.cpu)

    def runner(self, ms, name=None):
        def run():
            cpu = ms * max(0.05, 1 + self.noise * self.rng.standard_normal()) / 1000.0
            wall = cpu * (1 + self.rng.uniform(0.5, 1.5)) if self.rng.uniform() < self.preempt else cpu
            self.cpu += cpu
            self.wall += wall
            self.calls[name] = self.calls.get(name, 0) + 1
        return run

    def export_runner(self, prefix, shape):
        """A runner for an export whose latency is proportional to its parameter file (1 ms per 10 kB)."""
        return self.runner(export_ms(prefix), str(prefix))


def export_ms(prefix):
    return os.path.getsize(f"{prefix}.pdiparams") / 1e4
