"""The channels a walk meets and which of them are one: nodes, their classes, folds and parts.

A node is the channels one op produces (a layer's output, the model input, something not
followed). `couple` puts two lists of channels in one class (union-find): they are pruned with
the same indices. A node whose channels leave in whole units (heads) is folded onto a node of
the units (`fold`, in the walk); a node added to several nodes in a row is cut into parts; a
grouped conv constrains how a node's channels may leave. `ChannelWalk` builds on this.
"""

from .segments import Node, covers_whole_nodes


class ChannelClasses:
    """Nodes of channels and their classes (union-find), with the folds, parts and constraints coupling makes."""

    def __init__(self):
        self.nodes = []
        self.parent = []
        self.folds = {}  # node -> (fold node, unit, count): its channels leave in whole units (heads)
        self.parts = {}  # node -> [(part node, start, count)]: its channels are several nodes' in a row
        self.kinds = {}  # node -> {what its channels are: "heads", "embed", "mlp", "normed"}, for Group.kind
        self.constraints = {}  # node -> [(blocks, aligned)] from the grouped convs it meets

    def _new_node(self, channels, layer=None, reason=""):
        node = Node(len(self.nodes), channels, layer, reason)
        self.nodes.append(node)
        self.parent.append(node.index)
        return node.index

    def class_of(self, node):
        """The representative node of `node`'s class (nodes of one class are pruned with the same indices)."""
        return self._find(node)

    def _find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _union(self, a, b):
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def node_channels(self, node):
        """How many channels node `node` (a `Seg.node`) has in all."""
        return self.nodes[node].channels

    def covers_whole(self, a, b):
        """True when segment lists `a` and `b` list the same channels of whole nodes, in order (exact coupling)."""
        return covers_whole_nodes(a, b, self.node_channels)

    def block(self, segs, reason):
        """The channels in `segs` cannot be removed, because of `reason`."""
        for s in segs or []:
            node = self.nodes[s.node]
            if reason not in node.reasons:
                node.reasons.append(reason)

    def couple(self, a, b, reason):
        """Channel i of `a` is channel i of `b`: pruned with the same indices (else both are blocked with `reason`).

        One whole node against k copies of another ([x, x] of GhostNet's concat of a layer and its
        depthwise copy, added to a shortcut conv) folds the first: its k parts keep the same channels.
        """
        if covers_whole_nodes(a, b, self.node_channels):
            for sa, sb in zip(a, b):
                self._union(sa.node, sb.node)
        elif not (self._fold_copies(a, b) or self._fold_copies(b, a) or self._partition(a, b)
                  or self._partition(b, a)):
            self.block(list(a) + list(b), reason)

    def _partition(self, whole, pieces):
        """One whole node against several whole nodes in a row (ENet's [pooled input, zero padding] added to
        a conv, MixNet's sections of several layers added to one): the node is cut into one part per piece."""
        if len(whole) != 1 or len(pieces) < 2 or whole[0].node in self.folds or whole[0].node in self.parts:
            return False
        if not covers_whole_nodes(whole, whole, self.node_channels) or whole[0].repeat != 1:
            return False
        if any(p.repeat != 1 or not covers_whole_nodes([p], [p], self.node_channels) for p in pieces) or \
                len({p.node for p in pieces}) != len(pieces) or sum(p.count for p in pieces) != whole[0].count:
            return False
        parts, start = [], 0
        for piece in pieces:
            part = self._new_node(piece.count)
            self._union(part, piece.node)
            parts.append((part, start, piece.count))
            start += piece.count
        self.parts[whole[0].node] = parts
        return True

    def _fold_copies(self, whole, copies):
        if len(whole) != 1 or len(copies) < 2 or any(s != copies[0] for s in copies):
            return False
        if not (covers_whole_nodes(whole, whole, self.node_channels)
                and covers_whole_nodes(copies[:1], copies[:1], self.node_channels) and copies[0].repeat == 1):
            return False
        if whole[0].repeat != 1 or whole[0].count != copies[0].count * len(copies):
            return False
        folded = self.fold(whole[0].node, 1, copies[0].count)
        if folded is not None:
            self._union(folded, copies[0].node)
        return folded is not None

    def constrain(self, node, blocks, aligned=False):
        """Node `node`'s channels leave evenly from `blocks` equal runs (`aligned`: at the same positions in each)."""
        self.constraints.setdefault(node, []).append((blocks, aligned))

    def mark(self, segs, kind):
        """The nodes of `segs` carry channels of `kind`: "embed" (a stream attention reads), "mlp" (a linear
        layer's on tokens), "normed" (they pass a LayerNorm over the channels: a stream, not an MLP's width)."""
        for s in segs or []:
            self.kinds.setdefault(s.node, set()).add(kind)
