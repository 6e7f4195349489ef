"""Fold constant multiplies and adds into the convolutions beside them, in a legacy inference program.

Paddle Inference fuses a convolution with its bias, a batch norm and an activation, but not
with a multiply or add of a constant: PP-LCNet's learnable affine blocks (`x * s + b` with one
value), a batch norm an exporter wrote as a per-channel multiply and add, or slimkit's own
`Affine` layers each run as two passes over the tensor and keep the activation from fusing.
The export folds them where it is exact:

- **after a convolution**: conv -> (bias add) -> multiply / add of constants (one value or
  one per output channel), when each tensor has no other reader, become the conv's weights
  and one bias add: the predictor then fuses conv, bias and the activation after it;
- **before a 1x1 convolution** without padding: multiply / add of constants (one value or one
  per input channel) become its weights and bias (a padded conv would see the constant at its
  borders, so it is left alone);
- **what is left**, a multiply and add of one value each, becomes one `scale` op.

Works on float and int8 programs (there the weight a conv reads is an int8 tensor with its
per-channel scales, and the fold scales those); `fold_constants` returns how many ops went.
"""

import numpy as np
import paddle

CONVS = ("conv2d", "depthwise_conv2d")
_ELEMENTWISE = ("elementwise_mul", "elementwise_add")
_VIEWS = ("reshape2", "unsqueeze2", "squeeze2")  # a constant reshaped to broadcast


def fold_constants(program, scope, place):
    """Fold the program's constant multiplies and adds (see the module); returns the number of ops removed."""
    block = program.global_block()
    folder = _Folder(block, scope, place)
    before = len(block.ops)
    for step in (folder.fold_after_conv, folder.fold_before_conv, folder.merge_scalars):
        while step():
            pass
    return before - len(block.ops)


class _Folder:
    def __init__(self, block, scope, place):
        self.block, self.scope, self.place = block, scope, place
        self._made = 0
        self._edges = None  # ({tensor: readers}, {tensor: producers}), built on demand, dropped on every change

    # -- the program as a graph: one index of readers and producers, rebuilt after a change
    def _graph(self):
        if self._edges is None:
            readers, producers = {}, {}
            for op in self.block.ops:
                for name in dict.fromkeys(op.input_arg_names):  # an op reading a tensor twice is one reader
                    readers.setdefault(name, []).append(op)
                for name in dict.fromkeys(op.output_arg_names):
                    producers.setdefault(name, []).append(op)
            self._edges = readers, producers
        return self._edges

    def _changed(self):
        self._edges = None

    def _readers(self, name):
        return self._graph()[0].get(name, [])

    def _producer(self, name):
        found = self._graph()[1].get(name, [])
        return found[0] if len(found) == 1 else None

    def _only_reader(self, name):
        readers = self._readers(name)
        return readers[0] if len(readers) == 1 and readers[0].type != "fetch" else None

    def _value(self, name):
        var = self.scope.find_var(name)
        return None if var is None else np.array(var.get_tensor())

    def _set(self, name, array):
        self.scope.var(name).get_tensor().set(np.ascontiguousarray(array), self.place)

    def _constant(self, name):
        """The array of a persistable tensor, or of a reshape of one; None for a computed tensor."""
        var = self.block._find_var_recursive(name)
        if var is None:
            return None
        if var.persistable:
            return self._value(name)
        op = self._producer(name)
        if op is not None and op.type in _VIEWS:
            inner = self._constant(op.input("X")[0])
            return None if inner is None else inner.reshape([d if d > 0 else 1 for d in var.shape])
        return None

    def _channel_vector(self, op, tensor, channels):
        """The other operand of `op` as `channels` values along axis 1 of `tensor` (NCHW), or None."""
        if op.type not in _ELEMENTWISE or op.input("X") != [tensor] or len(op.input("Y")) != 1:
            return None
        values = self._constant(op.input("Y")[0])
        if values is None or values.dtype != np.float32:
            return None
        if values.size == 1:
            return np.full([channels], float(values.reshape(-1)[0]), np.float32)
        rank = len(self.block.var(tensor).shape)
        axis = op.attr("axis") if op.has_attr("axis") else -1
        shape = list(values.shape)
        if axis == -1:
            axis = rank - len(shape)
        placed = [1] * axis + shape + [1] * (rank - axis - len(shape))
        if len(placed) != rank or placed[1] != channels or values.size != channels:
            return None
        return values.reshape(-1)

    def _chain(self, start, channels):
        """The multiply / add ops of constants that read `start` one after another: [(op, kind, values)]."""
        chain, tensor = [], start
        while True:
            op = self._only_reader(tensor)
            vector = None if op is None else self._channel_vector(op, tensor, channels)
            if vector is None:
                return chain
            chain.append((op, op.type, vector))
            tensor = op.output("Out")[0]

    # -- the weights a conv reads: a float filter, or int8 values with their per-channel scales
    def _filter(self, conv):
        """("float", name) or ("int8", values name, scales name) of the conv's filter, or None."""
        name = conv.input("Filter")[0]
        var = self.block._find_var_recursive(name)
        if var is not None and var.persistable:
            return ("float", name) if self._only_reader(name) is conv else None
        op = self._producer(name)
        if op is None or op.type != "dequantize_linear" or self._only_reader(name) is not conv:
            return None
        values, scales = op.input("X")[0], op.input("Scale")[0]
        quant_axis = op.attr("quant_axis") if op.has_attr("quant_axis") else -1
        if (quant_axis != 0 or not self.block.var(values).persistable or self._only_reader(values) is not op
                or self._only_reader(scales) is not op):
            return None
        return ("int8", values, scales)

    def _scale_outputs(self, conv, factors):
        """Multiply the conv's output channel o by factors[o], in its filter."""
        found = self._filter(conv)
        if found[0] == "float":
            weight = self._value(found[1])
            self._set(found[1], weight * factors.reshape([-1] + [1] * (weight.ndim - 1)))
            return
        values, scales = self._value(found[1]), self._value(found[2])
        signs = np.where(factors < 0, -1, 1).astype(values.dtype)
        self._set(found[1], values * signs.reshape([-1] + [1] * (values.ndim - 1)))
        self._set(found[2], (scales * np.abs(factors)).astype(scales.dtype))

    def _foldable(self, conv):
        fmt = conv.attr("data_format") if conv.has_attr("data_format") else "NCHW"
        return conv.type in CONVS and fmt in ("NCHW", "AnyLayout") and self._filter(conv) is not None

    def _out_channels(self, conv):
        return self.block.var(conv.output("Output")[0]).shape[1]

    # -- the three steps; each makes one change and says so (False: nothing left to do)
    def fold_after_conv(self):
        for conv in list(self.block.ops):
            if not self._foldable(conv):
                continue
            out = conv.output("Output")[0]
            channels = self._out_channels(conv)
            if channels <= 0:
                continue
            chain = self._chain(out, channels)
            if not chain or (len(chain) == 1 and chain[0][1] == "elementwise_add" and self._is_bias(chain[0][0])):
                continue  # nothing to fold, or only the bias add the predictor fuses already
            scale, shift = np.ones(channels, np.float32), np.zeros(channels, np.float32)
            for _, kind, vector in chain:
                if kind == "elementwise_mul":
                    scale, shift = scale * vector, shift * vector
                else:
                    shift = shift + vector
            self._scale_outputs(conv, scale)
            last = chain[-1][0].output("Out")[0]
            self._remove([op for op, _, _ in chain])
            self._add_bias(conv, out, last, shift)
            return True
        return False

    def fold_before_conv(self):
        for conv in list(self.block.ops):
            if not (self._foldable(conv) and self._filter(conv)[0] == "float" and self._pointwise(conv)):
                continue
            tensor = conv.input("Input")[0]
            if self._only_reader(tensor) is not conv:
                continue
            steps, source, reader = [], tensor, conv
            while self._only_reader(source) is reader:  # the constants' ops that lead to the input, last first
                op = self._producer(source)
                vector = None if op is None else self._channel_vector(op, op.input("X")[0],
                                                                      self.block.var(source).shape[1])
                if vector is None:
                    break
                steps.append((op, op.type, vector))
                source, reader = op.input("X")[0], op
            if not steps:
                continue
            scale = np.ones_like(steps[0][2])
            shift = np.zeros_like(steps[0][2])
            for _, kind, vector in steps:  # walking back: input = scale * x + shift of the earlier x
                if kind == "elementwise_mul":
                    scale = scale * vector
                else:
                    shift = shift + scale * vector
            name = self._filter(conv)[1]
            weight = self._value(name)
            plane = weight.reshape(weight.shape[0], weight.shape[1])
            added = plane @ shift  # every output channel gains sum_i w[o, i] * shift[i]
            self._set(name, weight * scale.reshape(1, -1, 1, 1))
            self._remove([op for op, _, _ in steps])
            conv._rename_input(tensor, source)
            self._changed()
            out = conv.output("Output")[0]
            bias_op = self._only_reader(out)
            if bias_op is not None and self._is_bias(bias_op):
                bias = bias_op.input("Y")[0]
                self._set(bias, self._value(bias) + added)
            else:
                self._add_bias(conv, out, None, added)
            return True
        return False

    def merge_scalars(self):
        for op in list(self.block.ops):
            if op.type != "elementwise_mul":
                continue
            x, out = op.input("X")[0], op.output("Out")[0]
            after = self._only_reader(out)
            scale, bias = self._scalar(op, x), None if after is None else self._scalar(after, out)
            if scale is None or bias is None or after.type != "elementwise_add":
                continue
            index = self._index(op)
            final = after.output("Out")[0]
            self._remove([op, after])
            self.block._insert_op(index, type="scale", inputs={"X": [x]}, outputs={"Out": [final]},
                                  attrs={"scale": scale, "bias": bias, "bias_after_scale": True})
            self._changed()
            return True
        return False

    # -- helpers of the steps
    def _pointwise(self, conv):
        name = self._filter(conv)[1]
        shape = self.block.var(name).shape
        paddings = list(conv.attr("paddings")) if conv.has_attr("paddings") else [0]
        algorithm = conv.attr("padding_algorithm") if conv.has_attr("padding_algorithm") else "EXPLICIT"
        return (list(shape[2:]) == [1, 1] and int(conv.attr("groups")) == 1 and not any(paddings)
                and algorithm in ("EXPLICIT", "VALID"))

    def _scalar(self, op, tensor):
        """The one value `op` multiplies or adds to the float tensor `tensor`, or None."""
        vector = self._channel_vector(op, tensor, 1) if self._dtype(tensor) == paddle.float32 else None
        return None if vector is None else float(vector[0])

    def _dtype(self, name):
        return self.block.var(name).dtype

    def _is_bias(self, op):
        if op.type != "elementwise_add" or not op.has_attr("axis") or op.attr("axis") != 1:
            return False
        bias = op.input("Y")[0]
        var = self.block._find_var_recursive(bias)
        return var is not None and var.persistable and len(var.shape) == 1 and self._only_reader(bias) is op

    def _index(self, op):
        return next(i for i, o in enumerate(self.block.ops) if o is op)

    def _remove(self, ops):
        for op in ops:
            self.block._remove_op(self._index(op))
        self._changed()

    def _add_bias(self, conv, out, final, values):
        """Add `values` per channel to the conv's output `out`, into `final` (None: into `out`, the conv renamed)."""
        name = f"{conv.input('Filter')[0]}.slimkit_folded_bias_{self._made}"
        self._made += 1
        self.block.create_var(name=name, shape=[values.size], dtype="float32", persistable=True)
        self._set(name, values.astype(np.float32))
        if final is None:  # the readers of `out` (a fetch among them) keep reading that name
            final, out = out, f"{out}.slimkit_unbiased"
            self.block.create_var(name=out, shape=self.block.var(final).shape, dtype=self.block.var(final).dtype)
            conv._rename_output(final, out)
        self.block._insert_op(self._index(conv) + 1, type="elementwise_add", inputs={"X": [out], "Y": [name]},
                              outputs={"Out": [final]}, attrs={"axis": 1})
        self._changed()
