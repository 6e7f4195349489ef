"""Which groups a forward with sizes written into its code cannot lose channels from, found by trying.

In a traced program `paddle.reshape(x, [-1, 2048])` and `x.reshape([x.shape[0], c, -1])`
(c read from the tensor) both show a constant shape: the trace runs on one input shape.
Only the first breaks once channels are removed. For each reshape to a constant size,
`probe_fixed_shapes` removes one channel step from every prunable group reaching it, runs
the model once and puts it back: if the forward fails, those groups stay whole with the
reason, and every other group still prunes.
"""

import numpy as np

from ..core.errors import ModelError
from .remove import remove_with_undo
from .selection import keep_indices


def probe_fixed_shapes(model, graph, candidates):
    """Mark the groups of `candidates` ([(description, [Group])]) whose removal breaks the forward unprunable."""
    for description, groups in candidates:
        groups = [g for g in groups if g.prunable and g.channels > _step(g)]
        keep = {g.name: keep_indices(np.arange(g.channels, 0, -1), g.channels - _step(g), g) for g in groups}
        if not keep:
            continue
        try:
            _, undo = remove_with_undo(model, graph, keep)
        except ModelError:
            reason = f"its channels reach {description} written in the model's forward, which fails once they change"
            for g in groups:
                g.prunable, g.reason = False, reason
            continue
        undo()


def _step(group):
    return max(group.channel_multiple, group.blocks, 1)
