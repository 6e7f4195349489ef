"""Replay, across the trials of a sensitivity scan, the outputs of layers that run before the pruned ones.

Every trial of a scan prunes one group and evaluates the whole model on the same batches.
A layer that finishes before the first changed layer starts computes exactly what it
computed in the unpruned model, so its output is recorded once per evaluation batch and
replayed in later trials: a trial only computes the part of the network after the layers
it changed, which on average halves the cost of a scan. Each batch's model input is
compared with the recorded one; a batch that differs (an eval_fn that shuffles or
augments) is computed in full, so replaying never changes a result.
"""

import contextlib
import math

import numpy as np
import paddle

from ..core.surgery import eval_mode

__all__ = ["PrefixCache"]


def _execution_order(model, input_shape):
    """{layer name: [(start, end), ...]}: when each sublayer's forward began and ended, in one eval forward."""
    clock = [0]
    calls, open_calls, handles = {}, {}, []

    def pre(name):
        def hook(layer, inputs):
            clock[0] += 1
            open_calls.setdefault(name, []).append(clock[0])
        return hook

    def post(name):
        def hook(layer, inputs, outputs):
            clock[0] += 1
            calls.setdefault(name, []).append((open_calls[name].pop(), clock[0]))
        return hook

    for name, layer in model.named_sublayers():
        handles.append(layer.register_forward_pre_hook(pre(name)))
        handles.append(layer.register_forward_post_hook(post(name)))
    try:
        with eval_mode(model), paddle.no_grad():
            model(paddle.zeros(list(input_shape), dtype="float32"))
    finally:
        for h in handles:
            h.remove()
    return calls


class PrefixCache:
    """Records and replays the outputs of the layers that run before a trial's changed layers.

    `touched_sets` lists, for every trial to come, the names of the layers it changes;
    only outputs some trial can replay are recorded, up to `budget_bytes` in all.
    """

    def __init__(self, model, input_shape, touched_sets, budget_bytes=1 << 30):
        self.model = model
        self.budget = int(budget_bytes)
        calls = _execution_order(model, input_shape)
        self._all_calls = calls
        # Only layers run exactly once can be told apart by name alone.
        self._once = {name: c[0] for name, c in calls.items() if len(c) == 1}
        self.needed = set()
        for touched in touched_sets:
            self.needed.update(self.units(touched))
        self.stored_bytes = 0
        self.replayed = 0
        self._inputs, self._outputs = [], {}
        self._pass = -1
        self._mode = None          # per pass: "record", "replay" or None (compute everything)
        self._replay, self._record = set(), set()
        self._active = False

    def _first_start(self, touched):
        starts = [start for name in touched for start, _ in self._all_calls.get(name, [])]
        return min(starts) if starts else math.inf

    def units(self, touched):
        """The outermost layers that finish before the first layer in `touched` starts."""
        first = self._first_start(touched)
        before = sorted((span, name) for name, span in self._once.items() if span[1] < first)
        chosen, last_end = [], 0
        for (start, end), name in before:
            if start > last_end:
                chosen.append(name)
                last_end = end
        return chosen

    @contextlib.contextmanager
    def installed(self):
        """Wrap the forward of every layer some trial replays; unwrap on exit."""
        layers = dict(self.model.named_sublayers())
        saved = {}
        handle = self.model.register_forward_pre_hook(self._on_model_call)
        try:
            for name in self.needed:
                layer = layers[name]
                saved[name] = layer.__dict__.get("forward")
                layer.forward = self._wrap(name, layer.forward)
            yield self
        finally:
            handle.remove()
            for name, previous in saved.items():
                if previous is None:
                    layers[name].__dict__.pop("forward", None)
                else:
                    layers[name].forward = previous
            self._inputs, self._outputs = [], {}

    @contextlib.contextmanager
    def trial(self, touched):
        """Replay (and record) what runs before `touched` during the evaluations in the body."""
        first = self._first_start(touched)
        self._replay = set(self.units(touched)) & self.needed
        self._record = {n for n in self.needed if self._once[n][1] < first}
        self._pass, self._active = -1, True
        try:
            yield
        finally:
            self._active, self._mode = False, None

    def _on_model_call(self, layer, inputs):
        if not self._active:
            return None
        self._pass += 1
        x = inputs[0] if isinstance(inputs, (tuple, list)) and inputs else inputs
        if not isinstance(x, paddle.Tensor):
            self._mode = None
            return None
        value = x.numpy()
        if self._pass >= len(self._inputs):
            self._inputs.append(value.copy())
            self._mode = "record"
        elif self._inputs[self._pass].shape == value.shape and np.array_equal(self._inputs[self._pass], value):
            self._mode = "replay"
        else:
            self._mode = None
        return None

    def _wrap(self, name, forward):
        def cached_forward(*args, **kwargs):
            if self._mode is None:
                return forward(*args, **kwargs)
            key = (self._pass, name)
            if self._mode == "replay" and name in self._replay and key in self._outputs:
                self.replayed += 1
                # A copy: the model may change its input in place (`x += identity`).
                return paddle.assign(self._outputs[key])
            out = forward(*args, **kwargs)
            if name in self._record and key not in self._outputs and isinstance(out, paddle.Tensor):
                size = int(np.prod(out.shape)) * out.element_size()
                if self.stored_bytes + size <= self.budget:
                    self._outputs[key] = out.detach()
                    self.stored_bytes += size
            return out
        return cached_forward
