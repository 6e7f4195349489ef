"""Never slower than float: time the int8 export against the float one where it runs, and keep
float the layers oneDNN runs slower in int8, measured.

Whether int8 pays depends on the layer and the CPU. Measured on a recogniser-like network
(benchmarks/ptq_speed.py): with AMX the int8 first convolution (3 input channels) ran
several times slower than in float while everything else gained; with AVX2 the int8
Linear layers of the attention neck cost more than they saved (each needs its input
quantized and its output dequantized between LayerNorm, softmax and matmul, which stay
float), and depthwise convolutions gained little anywhere. No fixed rule fits every CPU,
so the stage measures:

1. the int8 export and the float export, timed interleaved in the stage's predictor;
2. if int8 is slower (or always, on request), each candidate group of layers
   (`candidate_groups`: convolutions reading the input image, depthwise convolutions,
   convolutions on 1x1 maps as in squeeze-excitation, Linear layers on token sequences,
   Linear layers on flat features) is tried in float: kept float when the export gets
   faster by more than `margin`, put back otherwise;
3. the result is timed against float once more, and the stage's note names the layers kept
   float with the figures, or says it is still slower.

Every timing goes through `time_exports` (the one place that calls the shared timer), and
the search (`keep_float_search`) takes the timing function as an argument, so its
decisions are tested with an injected timer.
"""

import dataclasses

import numpy as np
import paddle

FLOAT = "float"           # the float export's key in a timing
MODES = ("if_slower", "always", "off")


def time_exports(runners, warmup, runs, rounds, clock=None):
    """{name: Timing} of the runners ({name: no-argument callable}), timed interleaved by the shared timer.

    `clock` (seconds) defaults to the timer's wall clock; a benchmark on a busy machine may pass
    `time.thread_time` (one predictor thread: the CPU time it gets, not the time it waits).
    """
    from ..report.timing import time_runners

    return time_runners(runners, warmup=warmup, runs=runs, rounds=rounds, **({"clock": clock} if clock else {}))


@dataclasses.dataclass
class Group:
    """Quantized layers tried in float together: what they are, why oneDNN may run them slower, their names."""

    label: str
    reason: str
    layers: list


@dataclasses.dataclass
class Trial:
    """One group tried in float: the int8 export's median before and with the group float (ms)."""

    group: Group
    before_ms: float
    after_ms: float
    kept_float: bool


@dataclasses.dataclass
class SpeedDecision:
    """The outcome: layers kept float, every trial, and the final int8 vs float timing."""

    kept_float: list
    trials: list
    int8: object          # Timing of the chosen int8 export
    float: object         # Timing of the float export
    first_int8: object    # Timing of the int8 export before any layer was kept float
    searched: bool

    @property
    def slower(self):
        return self.int8.median >= self.float.median

    def note(self):
        """The stage note: the layers kept float and why, with the figures, or that int8 is still slower."""
        figures = (f"int8 export {self.int8.median:.3f} ms (p10-p90 {self.int8.p10:.3f}-{self.int8.p90:.3f}) vs "
                   f"float export {self.float.median:.3f} ms (p10-p90 {self.float.p10:.3f}-{self.float.p90:.3f}), "
                   f"timed interleaved")
        kept = [t for t in self.trials if t.kept_float]
        parts = [f"{t.group.label} ({len(t.group.layers)}: {', '.join(t.group.layers)}) kept float: {t.group.reason}; "
                 f"measured {t.before_ms:.3f} -> {t.after_ms:.3f} ms" for t in kept]
        tried = [t.group.label for t in self.trials if not t.kept_float]
        if tried:
            parts.append(f"tried in float and put back (no gain): {', '.join(tried)}")
        if not self.searched:
            return f"{figures}; int8 is faster, no layer kept float"
        verdict = (f"still slower than float by {self.int8.median / self.float.median:.2f}x after keeping "
                   f"{len(self.kept_float)} layer(s) float" if self.slower else
                   f"int8 {self.first_int8.median:.3f} ms before the search")
        return "; ".join([figures, verdict, *parts]) if parts else f"{figures}; {verdict}; no group to try"


def keep_float_search(groups, timings, mode="if_slower", margin=0.02):
    """Choose the layers to keep float: a SpeedDecision.

    `timings(variants)` times exports and returns {name: Timing}: `variants` maps a name to
    the frozenset of layers kept float in that int8 export, or to FLOAT for the float export.
    `mode`: "if_slower" searches only when int8 is slower than float, "always" also to gain
    speed, "off" only times. A group is kept float when the export gets faster by more than
    `margin` (a fraction); a group whose layers are all float already is not tried.
    """
    kept = frozenset()
    first = timings({FLOAT: FLOAT, "int8": kept})
    search = mode == "always" or (mode == "if_slower" and first["int8"].median >= first[FLOAT].median)
    if not search:
        return SpeedDecision([], [], first["int8"], first[FLOAT], first["int8"], False)
    trials = []
    for group in groups:
        trial = kept | set(group.layers)
        if trial == kept:
            continue
        measured = timings({FLOAT: FLOAT, "current": kept, "trial": frozenset(trial)})
        before, after = measured["current"].median, measured["trial"].median
        faster = after < before * (1.0 - margin)
        trials.append(Trial(group, before, after, faster))
        if faster:
            kept = frozenset(trial)
    final = timings({FLOAT: FLOAT, "int8": kept})
    order = [name for g in groups for name in g.layers]
    return SpeedDecision(sorted(kept, key=order.index), trials, final["int8"], final[FLOAT], first["int8"], True)


# --- which layers to try in float -----------------------------------------------------------

def input_shapes(model, names, input_shape):
    """{layer name: the shape of its input} over one forward pass of zeros (eval mode, model unchanged)."""
    from ..core.surgery import eval_mode

    layers = dict(model.named_sublayers())
    shapes, handles = {}, []
    for name in names:
        def record(layer, inputs, name=name):
            shapes[name] = list(inputs[0].shape)
        handles.append(layers[name].register_forward_pre_hook(record))
    try:
        with eval_mode(model), paddle.no_grad():
            model(paddle.zeros([1, *list(input_shape)[1:]], dtype="float32"))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def candidate_groups(model, names, input_shape):
    """The groups of quantized layers `names` worth trying in float, in the order they are tried."""
    layers = dict(model.named_sublayers())
    shapes = input_shapes(model, names, input_shape)
    convs = [n for n in names if isinstance(layers[n], paddle.nn.Conv2D)]
    linears = [n for n in names if isinstance(layers[n], paddle.nn.Linear)]
    image = list(input_shape)[1:]
    rules = [
        ("convolutions reading the input image", "few input channels: int8 kernels gain little and the image must be "
         "quantized first", [n for n in convs if shapes.get(n, [None])[1:] == image]),
        ("depthwise convolutions", "memory-bound: int8 kernels gain little over float",
         [n for n in convs if layers[n]._groups > 1 and layers[n]._groups == layers[n]._in_channels]),
        ("convolutions on 1x1 maps", "squeeze-excitation style: too little work to pay for quantizing their input",
         [n for n in convs if len(shapes.get(n, [])) == 4 and int(np.prod(shapes[n][2:])) == 1]),
        ("Linear layers on token sequences", "between float LayerNorm, softmax and matmul each needs its input "
         "quantized and its output dequantized", [n for n in linears if len(shapes.get(n, [])) >= 3]),
        ("Linear layers on flat features", "small matrix products: quantizing the input costs about what int8 saves",
         [n for n in linears if len(shapes.get(n, [])) == 2]),
    ]
    return [Group(label, reason, found) for label, reason, found in rules if found]


# --- timing int8 variants in the predictor ----------------------------------------------------

class VariantTimer:
    """The `timings` of keep_float_search for one quantized model: exports each variant once, times them.

    `quantized` is the calibrated (or QAT-trained) model; a variant keeps the named layers
    float (`keep_float`). Exports go to `folder/<n>/`; predictors are kept for the variants
    timed again. `predictor(prefix)` builds the InferenceModel the stage times with;
    `settings` are time_exports' (warmup, runs, rounds[, clock]).
    """

    def __init__(self, quantized, float_prefix, folder, input_shape, shape, predictor, settings, weight_bits=8):
        self.quantized, self.folder, self.input_shape, self.shape = quantized, folder, input_shape, shape
        self.predictor, self.settings, self.weight_bits = predictor, settings, weight_bits
        self.runners = {FLOAT: predictor(float_prefix).runner(shape)}

    def runner(self, variant):
        if variant not in self.runners:
            from .export import export_quantized
            from .qat import keep_float

            folder = self.folder / str(len(self.runners))
            prefix = export_quantized(keep_float(self.quantized, variant), folder, self.input_shape, self.weight_bits)
            self.runners[variant] = self.predictor(prefix).runner(self.shape)
        return self.runners[variant]

    def __call__(self, variants):
        runners = {name: self.runner(variant) for name, variant in variants.items()}
        return time_exports(runners, *self.settings)
