"""Time models where they run: several runners interleaved in one go, and the eager forward.

On a shared, noisy machine a latency measured now and another measured a minute later do
not compare; runs of different models taken turn by turn do. `time_runners` warms every
runner up, then times them round-robin for `rounds` rounds (the order rotates each round
so no runner always follows the same one) and reports each one's median with p10/p90.
A runner is any no-argument callable: a Paddle Inference predictor's `run`, an ONNX
Runtime session call, an eager forward.
"""

import dataclasses
import math
import os
import time

import numpy as np
import paddle

from ..core import device as devices

@dataclasses.dataclass
class Timing:
    """Latency samples of one runner (ms): median and the 10th/90th percentiles."""

    median: float
    p10: float
    p90: float
    samples: int

    def to_dict(self):
        return {"median_ms": round(self.median, 4), "p10_ms": round(self.p10, 4), "p90_ms": round(self.p90, 4),
                "samples": self.samples}


def _summary(times):
    times = np.asarray(times, dtype=np.float64)
    return Timing(float(np.median(times)), float(np.percentile(times, 10)), float(np.percentile(times, 90)),
                  int(times.size))


def time_runners(runners, warmup=10, runs=50, rounds=5, clock=time.perf_counter):
    """{name: Timing} of the runners ({name: callable}), timed interleaved, `runs` timed calls each.

    Every runner is first called `warmup` times; then each of `rounds` rounds calls every
    runner runs/rounds times in turn (rounding up). `clock` returns seconds (injectable).
    """
    names = list(runners)
    rounds = max(1, min(int(rounds), int(runs)))
    per_round = math.ceil(runs / rounds)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            run = runners[name]
            for _ in range(per_round):
                start = clock()
                run()
                times[name].append((clock() - start) * 1000.0)
    return {name: _summary(times[name]) for name in names}


def eager_runner(model, input_shape):
    """A callable running `model` forward (no grad) on a random batch; the caller sets eval mode."""
    x = paddle.randn(list(input_shape), dtype="float32")

    def run():
        with paddle.no_grad():
            _sync(model(x))
    return run


def _sync(out):
    # The clock may stop only once the forward has finished: a GPU queues kernels and returns
    # at once, so wait for it (no copy to the host, which is not part of the forward); on the
    # CPU, touch the result so lazily computed values are done.
    first = out[0] if isinstance(out, (list, tuple)) else out
    if not isinstance(first, paddle.Tensor):
        return
    if first.place.is_gpu_place():
        devices.synchronize(devices.place_name(first.place))
    else:
        first.numpy()


def eager_latency(model, input_shape, warmup=10, runs=50):
    """Median wall time (ms) of one forward pass, eval mode, no grad, batch as in `input_shape`."""
    was_training = model.training
    model.eval()
    try:
        return time_runners({"eager": eager_runner(model, input_shape)}, warmup, runs, rounds=1)["eager"].median
    finally:
        if was_training:
            model.train()


def eager_latency_method(input_shape, warmup, runs, device=None):
    """How the eager forward was timed, on `device` (default: the session's)."""
    device = devices.current() if device is None else device
    if device.startswith("gpu"):
        where = f"{device} (synchronised before each clock read)"
    else:
        where = f"CPU ({os.environ.get('OMP_NUM_THREADS') or f'{os.cpu_count()} cores'})"
    return (f"paddle eager (dygraph), eval mode, no_grad, input {list(input_shape)}, {where}; "
            f"median of {runs} runs after {warmup} warm-up runs")
