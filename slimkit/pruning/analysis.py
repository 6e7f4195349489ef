"""`analyze(model, input_shape)`: the model traced, its channels followed, and sizes written in its forward probed."""

from ..core.errors import ModelError
from ..core.surgery import parameter_layers
from .dependency.trace import check_forward_runs, check_shape, flat_outputs, output_structure, trace_program
from .dependency.grouping import fixed_shape_groups
from .dependency.walk import ChannelWalk
from .probe import probe_fixed_shapes


def analyze(model, input_shape, handlers=None):
    """Trace `model` on `input_shape` ([N, C, H, W]) and return its DependencyGraph.

    `handlers` ({op name: handler}, see slimkit.pruning.ops) are used for this analysis only,
    before the registry's: an op of a user's layer can be taught without changing anything global.

    The eval-mode forward is traced; when it leaves conv/linear layers uncalled, the
    training-mode forward is traced too, so auxiliary heads that only training calls
    (PSPNet, BiSeNet, PP-LiteSeg style) shrink with the features they read and prune their
    own channels. The model (weights, forward, train/eval flags) and the Paddle session
    (dynamic mode, PIR flag) are left as they were, also when tracing fails.
    """
    input_shape = check_shape(input_shape)
    eager_out = check_forward_runs(model, input_shape)
    tracer = ChannelWalk(model, handlers)
    tracer.run(*trace_program(model, input_shape))
    train_out = _follow_training_forward(model, input_shape, tracer)
    graph = tracer.graph(input_shape, [list(t.shape) for t in flat_outputs(eager_out)])
    graph.output_structure = output_structure(eager_out)
    graph.parameter_layers = parameter_layers(model)
    if train_out is not None:
        graph.train_structure = output_structure(train_out)
    probe_fixed_shapes(model, graph, fixed_shape_groups(tracer, graph))
    return graph


def _follow_training_forward(model, input_shape, tracer):
    """Walk the training-mode program too if it calls layers the eval one does not; its eager output, or None."""
    uncalled = tracer.uncalled()
    if not uncalled:
        return None
    try:
        train_out = check_forward_runs(model, input_shape, training=True)
        program, outputs = trace_program(model, input_shape, training=True)
    except ModelError as err:
        # The eval forward still prunes; the layers only training might call stay as they are.
        tracer.training_failed = err.message
        return None
    tracer.run(program, outputs)
    return train_out if tracer.uncalled() != uncalled else None
