"""Small models of the structures filter pruning follows, shared by the tests and benchmarks/prune_structures.py.

Each one is the smallest model showing one pattern (segmentation- and detection-style
outputs, channels-last blocks, fixed-shape reshapes, channel shuffles, equal splits, ...);
tests/test_prune_<structure>.py checks it exactly, the benchmark tables it with the
paddle.vision models. Defined in a file (not a notebook cell or `exec`): the trace reads
the forward's source.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

V = paddle.vision.models


def cbr(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2D(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2D(c_out), nn.ReLU())


class EncoderDecoder(nn.Layer):
    """U-Net style: skip concatenations, upsampling to the input's size (a size tensor), `[logits]` in eval."""

    def __init__(self, classes=4, aux=False):
        super().__init__()
        self.enc1, self.enc2, self.enc3 = cbr(3, 16), cbr(16, 24, 2), cbr(24, 32, 2)
        self.dec2, self.dec1 = cbr(32 + 24, 24), cbr(24 + 16, 16)
        self.head = nn.Conv2D(16, classes, 1)
        self.aux = nn.Conv2D(32, classes, 1) if aux else None

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(paddle.concat([F.interpolate(e3, scale_factor=2, mode="bilinear"), e2], axis=1))
        d1 = self.dec1(paddle.concat([F.interpolate(d2, size=paddle.shape(e1)[2:], mode="nearest"), e1], axis=1))
        logits = F.interpolate(self.head(d1), size=paddle.shape(x)[2:], mode="bilinear", align_corners=False)
        if self.aux is None:
            return [logits]
        return [logits, F.interpolate(self.aux(e3), size=x.shape[2:], mode="bilinear")]


class Detector(nn.Layer):
    """Backbone with three strides, FPN-style neck (lateral 1x1, top-down upsample + add), two heads, a dict."""

    def __init__(self, classes=3):
        super().__init__()
        self.c3, self.c4, self.c5 = cbr(3, 16, 2), cbr(16, 32, 2), cbr(32, 48, 2)
        self.lat3, self.lat4, self.lat5 = nn.Conv2D(16, 24, 1), nn.Conv2D(32, 24, 1), nn.Conv2D(48, 24, 1)
        self.smooth = cbr(24, 24)
        self.cls = nn.Conv2D(24, classes, 3, padding=1)
        self.box = nn.Conv2D(24, 4, 3, padding=1)

    def forward(self, x):
        c3 = self.c3(x)
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p5 = self.lat5(c5)
        p4 = self.lat4(c4) + F.interpolate(p5, scale_factor=2, mode="nearest")
        p3 = self.lat3(c3) + F.upsample(p4, size=c3.shape[2:], mode="nearest")
        levels = [self.smooth(p) for p in (p3, p4, p5)]
        # Keys in sorted order: a jit-loaded model returns a dict's values sorted by key.
        return {"boxes": tuple(self.box(p) for p in levels), "scores": [self.cls(p) for p in levels]}


class MobileOps(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2D(3, 16, 3, padding=1), nn.Conv2D(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2D(16)
        self.shared = nn.PReLU()  # one slope for every channel
        self.per_channel = nn.PReLU(16)
        self.gate = nn.Conv2D(16, 16, 1)
        self.c = nn.Conv2D(16, 24, 3, padding=1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = paddle.maximum(self.a(x), self.b(x))  # a dynamic activation of two branches
        y = self.shared(self.bn(y)) * 0.5
        y = paddle.minimum(F.hardswish(y), F.relu6(y))
        y = self.per_channel(paddle.clip(y, -2.0, 2.0))
        y = y * F.hardsigmoid(self.gate(F.adaptive_avg_pool2d(y, 1)))  # an [N, C, 1, 1] gate
        y = paddle.where(y > 0, y, 0.1 * y)
        y = F.pad(y, [1, 1, 1, 1])
        y = F.interpolate(self.c(y), scale_factor=0.5, mode="bicubic")
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class Interpolations(nn.Layer):
    def __init__(self, with_size):
        super().__init__()
        self.with_size = with_size
        self.a = nn.Conv2D(3, 16, 3, stride=2, padding=1)
        self.b = nn.Conv2D(16, 16, 3, padding=1)
        self.c = nn.Conv1D(16, 12, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        y = self.a(x)
        if self.with_size:
            y = F.interpolate(y, size=paddle.shape(x)[2:], mode="bilinear", align_corners=True)
        else:
            y = self.up(F.interpolate(y, scale_factor=0.5, mode="bilinear"))
        y = self.b(y).mean(axis=2)  # [N, C, W]
        y = F.interpolate(y, scale_factor=2, mode="linear", data_format="NCW")
        return self.fc(self.c(y).mean(axis=2))


class ChannelMultiplier(nn.Layer):
    """BiSeNetV2's gather-and-expansion: a depthwise conv with out = 3 * in, then a 1x1 projection."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 16, 3, padding=1)
        self.expand = nn.Conv2D(16, 48, 3, padding=1, groups=16)
        self.bn = nn.BatchNorm2D(48)
        self.project = nn.Conv2D(48, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = F.relu(self.bn(self.expand(F.relu(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(self.project(y), 1).flatten(1))


class ConvNeXtBlock(nn.Layer):
    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2D(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = self.create_parameter([c], default_initializer=nn.initializer.Uniform(0.5, 1.5))

    def forward(self, x):
        y = self.dw(x).transpose([0, 2, 3, 1])
        y = self.gamma * self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + y.transpose([0, 3, 1, 2])


class ConvNeXtTiny(nn.Layer):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 16, 2, stride=2)
        self.stage = nn.Sequential(ConvNeXtBlock(16), ConvNeXtBlock(16))
        self.head_norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.stage(self.stem(x)).mean(axis=[2, 3])
        return self.fc(self.head_norm(y))


class TokenBlock(nn.Layer):
    """[N, C, H, W] -> [N, H*W, C] tokens -> Linear on C -> back to [N, C, H, W]; GroupNorm in the conv part."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 16, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.q = nn.Linear(16, 32)
        self.proj = nn.Linear(32, 24)
        self.out = nn.Conv2D(24, 4, 1)

    def forward(self, x):
        y = F.relu(self.gn(self.conv(x)))
        n, c, h, w = y.shape
        t = y.flatten(2).transpose([0, 2, 1])  # [N, HW, C]
        t = self.proj(F.gelu(self.q(t)))
        y = t.transpose([0, 2, 1]).reshape([n, -1, h, w])
        return [self.out(y)]


class FixedWidthHead(nn.Layer):
    """`paddle.reshape(y, [-1, 64])` before the classifier (the width written in the code), or computed from y.shape."""

    def __init__(self, computed):
        super().__init__()
        self.computed = computed
        self.stem = nn.Conv2D(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2D(16)
        self.body = nn.Conv2D(16, 32, 3, padding=1)
        self.last = nn.Conv2D(32, 64, 1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        y = self.last(F.relu(self.body(F.relu(self.bn(self.stem(x))))))
        y = F.adaptive_avg_pool2d(y, 1)
        y = y.reshape([y.shape[0], y.shape[1]]) if self.computed else paddle.reshape(y, [-1, 64])
        return self.fc(y)


class EESP(nn.Layer):
    """ESPNetV2's block: grouped reduce, dilated depthwise branches, hierarchical adds, concat, grouped expand."""

    def __init__(self, channels=32, branches=4):
        super().__init__()
        width = channels // branches
        self.reduce = nn.Conv2D(channels, width, 1, groups=branches)
        self.reduce_bn = nn.BatchNorm2D(width)
        self.branches = nn.LayerList([nn.Conv2D(width, width, 3, padding=d, dilation=d, groups=width)
                                      for d in range(1, branches + 1)])
        self.cat_bn = nn.BatchNorm2D(channels)
        self.cat_act = nn.PReLU(channels)
        self.expand = nn.Conv2D(channels, channels, 1, groups=branches)
        self.expand_bn = nn.BatchNorm2D(channels)
        self.act = nn.PReLU()

    def forward(self, x):
        reduced = F.relu(self.reduce_bn(self.reduce(x)))
        outs = [self.branches[0](reduced)]
        for branch in self.branches[1:]:
            outs.append(branch(reduced) + outs[-1])  # hierarchical feature fusion
        y = self.expand_bn(self.expand(self.cat_act(self.cat_bn(paddle.concat(outs, axis=1)))))
        return self.act(x + y)


class ESPNetLike(nn.Layer):
    """Two EESP blocks on a stem: reduce -> split into branches -> merge, with residuals."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, 64, 3, stride=2, padding=1), nn.BatchNorm2D(64), nn.PReLU())
        self.blocks = nn.Sequential(EESP(64), EESP(64))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


class ResNetSeg(nn.Layer):
    """Segmentation-style: resnet18 features, a 1x1 classifier, upsampled to the input's size, `[logits]`."""

    def __init__(self, classes=4):
        super().__init__()
        self.backbone = V.resnet18(num_classes=-1, with_pool=False)
        self.head = nn.Sequential(nn.Conv2D(512, 64, 3, padding=1), nn.BatchNorm2D(64), nn.ReLU(),
                                  nn.Conv2D(64, classes, 1))

    def forward(self, x):
        return [F.interpolate(self.head(self.backbone(x)), size=paddle.shape(x)[2:], mode="bilinear")]


class ResNetFPN(nn.Layer):
    """Detection-style: resnet18 stages 2-4, an FPN neck (lateral + top-down add), class and box heads, a dict."""

    def __init__(self, classes=3, width=64):
        super().__init__()
        self.body = V.resnet18(num_classes=-1, with_pool=False)
        self.lateral = nn.LayerList([nn.Conv2D(c, width, 1) for c in (128, 256, 512)])
        self.smooth = nn.Conv2D(width, width, 3, padding=1)
        self.cls, self.box = nn.Conv2D(width, classes, 3, padding=1), nn.Conv2D(width, 4, 3, padding=1)

    def forward(self, x):
        b = self.body
        c2 = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
        c3 = b.layer2(c2)
        c4 = b.layer3(c3)
        c5 = b.layer4(c4)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[2:], mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[2:], mode="nearest")
        levels = [F.relu(self.smooth(p)) for p in (p3, p4, p5)]
        return {"boxes": [self.box(p) for p in levels], "scores": [self.cls(p) for p in levels]}


def channel_shuffle(x, groups, literal=None):
    """ShuffleNet's channel shuffle; `literal` writes that many channels per group into the reshape."""
    n, c, h, w = x.shape
    per_group = c // groups if literal is None else literal
    x = paddle.transpose(paddle.reshape(x, [n, groups, per_group, h, w]), [0, 2, 1, 3, 4])
    return paddle.reshape(x, [n, -1, h, w])


def dw(c, stride=1):
    return nn.Sequential(nn.Conv2D(c, c, 3, stride=stride, padding=1, groups=c), nn.BatchNorm2D(c))


class ShuffleUnits(nn.Layer):
    """ShuffleNetV2's down-sampling unit (two branches, concat, shuffle), then a shuffle of one layer's output.

    `literal=True` writes the channels per group into the first shuffle's reshape ([n, 2, 12, h, w]).
    """

    def __init__(self, literal=False):
        super().__init__()
        self.literal = literal
        self.stem = cbr(3, 16)
        self.left_dw, self.left = dw(16, 2), nn.Conv2D(16, 12, 1)
        self.right_in, self.right_dw, self.right = nn.Conv2D(16, 12, 1), dw(12, 2), nn.Conv2D(12, 12, 1)
        self.mid = nn.Conv2D(24, 32, 1)
        self.mid_dw = dw(32)
        self.last = nn.Conv2D(32, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        left = F.relu(self.left(self.left_dw(x)))
        right = F.relu(self.right(self.right_dw(F.relu(self.right_in(x)))))
        y = channel_shuffle(paddle.concat([left, right], axis=1), 2, 12 if self.literal else None)
        y = channel_shuffle(F.relu(self.mid(y)), 4)
        y = F.relu(self.last(self.mid_dw(y)))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class ShuffleBasicUnit(nn.Layer):
    """ShuffleNetV2's basic unit: split in halves, one half through a branch, concat, shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.pw, self.dw, self.linear = nn.Conv2D(8, 8, 1), dw(8), nn.Conv2D(8, 8, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x1, x2 = paddle.split(x, [x.shape[1] // 2, x.shape[1] // 2], axis=1)
        x2 = F.relu(self.linear(self.dw(F.relu(self.pw(x2)))))
        y = channel_shuffle(paddle.concat([x1, x2], axis=1), 2)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class EqualSplit(nn.Layer):
    """One layer's output split in equal parts along channels, each part to its own layer.

    `sections`: "chunk" (paddle.chunk), "computed" (sizes from x.shape) or "literal" ([8, 8] in the code).
    """

    def __init__(self, sections="chunk"):
        super().__init__()
        self.sections = sections
        self.stem = cbr(3, 16)
        self.p, self.q = nn.Conv2D(8, 12, 3, padding=1), nn.Conv2D(8, 12, 3, padding=1)
        self.out = nn.Conv2D(24, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.stem(x)
        if self.sections == "chunk":
            a, b = paddle.chunk(y, 2, axis=1)
        elif self.sections == "computed":
            a, b = paddle.split(y, [y.shape[1] // 2, y.shape[1] // 2], axis=1)
        else:
            a, b = paddle.split(y, [8, 8], axis=1)
        y = paddle.concat([F.relu(self.p(a)), F.relu(self.q(b))], axis=1)
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.out(y)), 1).flatten(1))


class GhostModule(nn.Layer):
    """GhostNet's module: a 1x1 conv, a depthwise "cheap" copy of its output, both concatenated, then sliced
    to the width written in the code (`out[:, :self.oup]`, as the original GhostNet does)."""

    def __init__(self, c_in, c_out, relu=True):
        super().__init__()
        self.oup, init = c_out, (c_out + 1) // 2
        self.primary = nn.Sequential(nn.Conv2D(c_in, init, 1), nn.BatchNorm2D(init),
                                     nn.ReLU() if relu else nn.Identity())
        self.cheap = nn.Sequential(nn.Conv2D(init, init, 3, padding=1, groups=init), nn.BatchNorm2D(init),
                                   nn.ReLU() if relu else nn.Identity())

    def forward(self, x):
        y = self.primary(x)
        return paddle.concat([y, self.cheap(y)], axis=1)[:, :self.oup]


class GhostBottleneck(nn.Layer):
    """Two ghost modules, squeeze-excitation between them, a depthwise + 1x1 conv shortcut added to the output."""

    def __init__(self, c_in, hidden, c_out):
        super().__init__()
        self.ghost1, self.ghost2 = GhostModule(c_in, hidden), GhostModule(hidden, c_out, relu=False)
        self.squeeze, self.excite = nn.Conv2D(hidden, hidden // 4, 1), nn.Conv2D(hidden // 4, hidden, 1)
        self.shortcut = nn.Sequential(nn.Conv2D(c_in, c_in, 3, padding=1, groups=c_in), nn.BatchNorm2D(c_in),
                                      nn.Conv2D(c_in, c_out, 1), nn.BatchNorm2D(c_out))

    def forward(self, x):
        y = self.ghost1(x)
        y = y * F.hardsigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(y, 1)))))
        return self.ghost2(y) + self.shortcut(x)


class GhostNetLike(nn.Layer):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.blocks = nn.Sequential(GhostBottleneck(16, 32, 24), GhostBottleneck(24, 48, 24))
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


class MixConv(nn.Layer):
    """MixNet's mixed depthwise conv: the channels split into sections kept as an attribute
    (`paddle.split(x, self.splitted_in_channels, axis=1)`), one kernel size per section, concatenated."""

    def __init__(self, channels, kernels=(3, 5)):
        super().__init__()
        self.splitted_in_channels = [channels // len(kernels)] * len(kernels)
        self.convs = nn.LayerList([nn.Conv2D(c, c, k, padding=k // 2, groups=c)
                                   for c, k in zip(self.splitted_in_channels, kernels)])

    def forward(self, x):
        parts = paddle.split(x, self.splitted_in_channels, axis=1)
        return paddle.concat([conv(p) for conv, p in zip(self.convs, parts)], axis=1)


class MixNetLike(nn.Layer):
    """Expand 1x1, mixed depthwise 3x3/5x5 (and 3x3/5x5/7x7/9x9), project 1x1, with a residual."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.expand = nn.Sequential(nn.Conv2D(16, 48, 1), nn.BatchNorm2D(48), nn.ReLU())
        self.mix = MixConv(48)
        self.mix_bn = nn.BatchNorm2D(48)
        self.project = nn.Sequential(nn.Conv2D(48, 16, 1), nn.BatchNorm2D(16))
        self.wide = nn.Sequential(nn.Conv2D(16, 64, 1), nn.BatchNorm2D(64), nn.ReLU(), MixConv(64, (3, 5, 7, 9)))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(F.relu(self.mix_bn(self.mix(self.expand(x)))))
        return self.fc(F.adaptive_avg_pool2d(self.wide(x), 1).flatten(1))


class ENetDownsampling(nn.Layer):
    """ENet's downsampling bottleneck: max pooling padded with zeros up to the extension branch's width
    (`paddle.zeros` sized from the branches' shapes), added to it; then a regular bottleneck."""

    def __init__(self, c_in=16, c_out=32):
        super().__init__()
        self.pool = nn.MaxPool2D(2, stride=2)
        self.ext = nn.Sequential(nn.Conv2D(c_in, c_in // 2, 2, stride=2), nn.BatchNorm2D(c_in // 2), nn.PReLU(),
                                 nn.Conv2D(c_in // 2, c_out, 1), nn.BatchNorm2D(c_out))
        self.act = nn.PReLU(c_out)

    def forward(self, x):
        main, ext = self.pool(x), self.ext(x)
        n, c_ext, h, w = ext.shape
        padding = paddle.zeros((n, c_ext - main.shape[1], h, w))
        return self.act(paddle.concat((main, padding), 1) + ext)


class ENetLike(nn.Layer):
    """ENet's initial block (a strided conv concatenated with the pooled input), a downsampling bottleneck,
    a regular one, and a transposed-conv decoder back to the input's size; `[logits]`."""

    def __init__(self, classes=4):
        super().__init__()
        self.initial = nn.Conv2D(3, 13, 3, stride=2, padding=1)
        self.initial_bn = nn.BatchNorm2D(16)
        self.down = ENetDownsampling(16, 32)
        self.regular = nn.Sequential(nn.Conv2D(32, 8, 1), nn.BatchNorm2D(8), nn.ReLU(), nn.Conv2D(8, 8, 3, padding=1),
                                     nn.BatchNorm2D(8), nn.ReLU(), nn.Conv2D(8, 32, 1), nn.BatchNorm2D(32))
        self.up = nn.Conv2DTranspose(32, 16, 2, stride=2)
        self.classifier = nn.Conv2DTranspose(16, classes, 2, stride=2)

    def forward(self, x):
        y = F.relu(self.initial_bn(paddle.concat((self.initial(x), F.max_pool2d(x, 3, stride=2, padding=1)), 1)))
        y = self.down(y)
        y = F.relu(y + self.regular(y))
        return [self.classifier(F.relu(self.up(y)))]
