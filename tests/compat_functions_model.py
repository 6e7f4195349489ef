"""A model calling paddle functions Paddle 3.3 binds to PIR-only `_C_ops` calls (test_compat_legacy_functions.py).

Defined in a file: the export traces the forward's source.
"""

import paddle
import paddle.nn.functional as F


class PirOnlyFunctions(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(8, 8)
        self.gelu = paddle.nn.GELU()
        self.tanh = paddle.nn.Tanh()

    def forward(self, x):
        y = self.fc(x)
        attention = paddle.matmul(y, y, transpose_y=True)
        z = attention.matmul(y) + paddle.bmm(y, y.transpose([0, 2, 1])).matmul(y)
        z = paddle.multiply(self.gelu(z), F.sigmoid(y)) + F.gelu(y, approximate=True)
        return paddle.maximum(self.tanh(z), paddle.minimum(paddle.exp(-y.abs()), y)) + paddle.tanh(y)
