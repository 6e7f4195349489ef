"""The layers an imported program is made of, beside paddle's own (Conv2D, Linear, BatchNorm2D, ...).

- `ExportedModel`: the base class of every imported model; its forward is generated Python
  (slimkit/exported/codegen.py) and it remembers the program's interface (`program_signature`).
- `Affine`: `x * weight + bias` with one value per channel (a batch norm an exporter folded into
  the multiply and add after a conv) or one value for the whole tensor (PP-LCNet's learnable
  affine blocks). The weights are stored 1-D, so the channel tracer slices them with the channels.
- `Parameters`: the parameters ops other than those layers read, by name.
"""

import numpy as np
import paddle


class ExportedModel(paddle.nn.Layer):
    """A paddle.nn.Layer rebuilt from an exported inference program (made by `slimkit.from_inference`).

    `program_signature` holds the program's inputs and outputs ({"name", "shape", "dtype"}, -1
    where a size is dynamic) and the files it came from: slimkit's exports keep them.
    """

    def __init__(self, signature):
        super().__init__()
        self.program_signature = signature

    def input_spec(self):
        """[paddle.static.InputSpec] of the program's inputs: names, dtypes, dynamic sizes as None."""
        return [paddle.static.InputSpec([None if d < 0 else d for d in item["shape"]], item["dtype"], item["name"])
                for item in self.program_signature["inputs"]]


class Affine(paddle.nn.Layer):
    """`x * weight + bias` along one axis (`view` places the 1-D weights for broadcasting) or with scalars.

    Either of `weight` and `bias` may be None. `view` is the shape the weights take to broadcast
    against the input ([1, -1, 1, 1] for NCHW channels; None for one-value weights or weights on
    the last axis), with -1 at the channel axis, so removing channels needs no other change.
    """

    def __init__(self, weight=None, bias=None, view=None):
        super().__init__()
        self.view = list(view) if view is not None else None
        self.weight = self._param(weight, trainable=True)
        self.bias = self._param(bias, trainable=True)

    def _param(self, values, trainable):
        if values is None:
            return None
        values = np.asarray(values, dtype="float32").reshape([-1])
        param = self.create_parameter([values.size], default_initializer=paddle.nn.initializer.Constant(0.0))
        param.set_value(values)
        param.stop_gradient = not trainable
        return param

    def forward(self, x):
        if self.weight is not None:
            x = x * self._placed(self.weight)
        if self.bias is not None:
            x = x + self._placed(self.bias)
        return x

    def _placed(self, param):
        if self.view is None:
            return param
        return paddle.reshape(param, self.view)

    def extra_repr(self):
        size = (self.weight if self.weight is not None else self.bias).shape[0]
        return f"{size}, view={self.view}, weight={self.weight is not None}, bias={self.bias is not None}"


class Parameters(paddle.nn.Layer):
    """Parameters read by ops that are not a layer of their own (a positional embedding, a class token)."""

    def add(self, name, values, trainable=True):
        values = np.asarray(values)
        param = self.create_parameter(list(values.shape), dtype=str(values.dtype),
                                      default_initializer=paddle.nn.initializer.Constant(0.0))
        param.set_value(values)
        param.stop_gradient = not trainable
        self.add_parameter(name, param)
        return param
