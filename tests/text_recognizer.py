"""A small PP-OCR-like text recogniser, shared by the quantization tests and benchmarks/ptq_speed.py.

The structure of PaddleOCR's mobile recognisers (PP-OCRv4 `PPLCNetV3` + `SVTRNeck` +
`CTCHead`), in a few dozen lines:

- a PP-LCNet-style backbone: conv-BN-hardswish stem, depthwise-separable blocks
  (depthwise conv-BN-hardswish, optional squeeze-excitation, pointwise conv-BN-hardswish)
  that downsample the height faster than the width, average-pooled to height 1;
- an SVTR-like neck: conv-BN-swish down to `hidden` channels, the feature map flattened to a
  sequence, pre-norm transformer blocks (LayerNorm, qkv Linear, matmul attention with
  softmax, output Linear, MLP Linear-GELU-Linear), back to a map, a conv, a concatenation
  with the backbone's output and conv-BN-swish layers;
- a CTC head: one Linear per time step to the classes, softmax in eval mode.

A 48x320 input gives 40 time steps. Defined in a file (not a notebook cell): the trace
reads the forward's source.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride=1, groups=1, act=nn.Hardswish):
        padding = (kernel - 1) // 2
        super().__init__(nn.Conv2D(c_in, c_out, kernel, stride, padding, groups=groups, bias_attr=False),
                         nn.BatchNorm2D(c_out), act())


class SqueezeExcite(nn.Layer):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.reduce = nn.Conv2D(channels, channels // reduction, 1)
        self.expand = nn.Conv2D(channels // reduction, channels, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(self.pool(x)))))


class DepthwiseSeparable(nn.Layer):
    def __init__(self, c_in, c_out, stride, kernel=3, se=False):
        super().__init__()
        self.dw = ConvBNAct(c_in, c_in, kernel, stride, groups=c_in)
        self.se = SqueezeExcite(c_in) if se else None
        self.pw = ConvBNAct(c_in, c_out, 1)

    def forward(self, x):
        x = self.dw(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw(x)


# (kernel, in, out, stride, se) per block, PP-LCNet's recognition layout; channels scaled by `scale`.
BLOCKS = [(3, 32, 64, 1, False), (3, 64, 64, 1, False), (3, 64, 128, (2, 1), False), (3, 128, 128, 1, False),
          (3, 128, 256, (1, 2), False), (5, 256, 256, 1, False), (5, 256, 256, 1, False),
          (5, 256, 512, (2, 1), True), (5, 512, 512, 1, True), (5, 512, 512, (2, 1), False)]


class Backbone(nn.Layer):
    def __init__(self, scale=0.95):
        super().__init__()
        width = lambda c: max(8, int(c * scale) // 8 * 8)
        self.stem = ConvBNAct(3, width(16), 3, 2)
        blocks = [DepthwiseSeparable(width(16), width(32), 1)]
        blocks += [DepthwiseSeparable(width(i), width(o), s, k, se) for k, i, o, s, se in BLOCKS]
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2D([3, 2], [3, 2])
        self.out_channels = width(512)

    def forward(self, x):
        return self.pool(self.blocks(self.stem(x)))


class Attention(nn.Layer):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape([-1, length, 3, self.heads, dim // self.heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attention = F.softmax(q @ k.transpose([0, 1, 3, 2]), axis=-1)
        return self.proj((attention @ v).transpose([0, 2, 1, 3]).reshape([-1, length, dim]))


class Block(nn.Layer):
    def __init__(self, dim, heads, mlp_ratio=2):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, epsilon=1e-5), nn.LayerNorm(dim, epsilon=1e-5)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SVTRNeck(nn.Layer):
    def __init__(self, channels, hidden=120, depth=2, heads=8):
        super().__init__()
        self.conv1 = ConvBNAct(channels, channels // 8, 3, act=nn.Swish)
        self.conv2 = ConvBNAct(channels // 8, hidden, 1, act=nn.Swish)
        self.blocks = nn.LayerList([Block(hidden, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden, epsilon=1e-5)
        self.conv3 = ConvBNAct(hidden, channels, 1, act=nn.Swish)
        self.conv4 = ConvBNAct(2 * channels, channels // 8, 3, act=nn.Swish)
        self.conv5 = ConvBNAct(channels // 8, hidden, 1, act=nn.Swish)

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        z = self.conv2(self.conv1(x))
        c = z.shape[1]
        z = z.flatten(2).transpose([0, 2, 1])
        for block in self.blocks:
            z = block(z)
        z = self.norm(z).transpose([0, 2, 1]).reshape([-1, c, h, w])
        z = self.conv5(self.conv4(paddle.concat([x, self.conv3(z)], axis=1)))
        return z.squeeze(2).transpose([0, 2, 1])  # [N, W, hidden]: one feature vector per time step


class TextRecognizer(nn.Layer):
    """Backbone + SVTR neck + CTC head: [N, 3, 48, W] -> [N, W/8, classes] (probabilities in eval mode)."""

    def __init__(self, num_classes=6625, scale=0.95, hidden=120, depth=2):
        super().__init__()
        self.backbone = Backbone(scale)
        self.neck = SVTRNeck(self.backbone.out_channels, hidden, depth)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        logits = self.head(self.neck(self.backbone(x)))
        return logits if self.training else F.softmax(logits, axis=-1)


def text_recognizer(num_classes=6625, scale=0.95, hidden=120, depth=2, seed=0):
    """A TextRecognizer with seeded random weights, in eval mode."""
    paddle.seed(seed)
    model = TextRecognizer(num_classes, scale, hidden, depth)
    model.eval()
    return model
