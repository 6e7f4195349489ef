"""Small attention and token models, shared by tests/test_prune_attention_*.py and benchmarks/prune_structures.py.

Each one is the smallest model showing one family's pattern, written as the public zoos write
them (timm's layout of ViT/DeiT, Swin, PVT, CvT, MobileViT, the SVTR neck of PP-OCR, SegFormer):
qkv reshaped to [B, N, 3, heads, head_dim] with `self.head_dim`, class and distillation tokens,
position embeddings, relative position biases, window partitions and cyclic shifts, spatial
reduction attention, depthwise convs in MLPs, conv projections, MobileViT's unfolding into
patches. Defined in a file (not a notebook cell or `exec`): the trace reads the forward's source.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class Attention(nn.Layer):
    """Multi-head self-attention from one qkv layer (timm's layout; `c_from_x` computes head_dim as
    PaddleClas does: `C // self.num_heads` from the input, which cannot lose heads)."""

    def __init__(self, dim, heads, c_from_x=False, unbind=False):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.c_from_x, self.unbind = c_from_x, unbind
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        head_dim = c // self.num_heads if self.c_from_x else self.head_dim
        qkv = self.qkv(x).reshape([b, n, 3, self.num_heads, head_dim]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv.unbind(0) if self.unbind else (qkv[0], qkv[1], qkv[2])
        attn = F.softmax((q @ k.transpose([0, 1, 3, 2])) * self.scale, axis=-1)
        x = (attn @ v).transpose([0, 2, 1, 3]).reshape([b, n, c if self.c_from_x else -1])
        return self.proj(x)


class Mlp(nn.Layer):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Layer):
    def __init__(self, dim, heads, attention=None):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = attention or Attention(dim, heads)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Layer):
    """Patch embedding, class token (and DeiT's distillation token), position embedding, blocks, head(s)."""

    def __init__(self, dim=32, depth=2, heads=4, patch=4, img=16, distilled=False, c_from_x=False, unbind=False):
        super().__init__()
        tokens = 2 if distilled else 1
        self.patch_embed = nn.Conv2D(3, dim, patch, stride=patch)
        self.cls_token = self.create_parameter([1, 1, dim], default_initializer=nn.initializer.Normal(std=0.02))
        self.dist_token = self.create_parameter([1, 1, dim], default_initializer=nn.initializer.Normal(
            std=0.02)) if distilled else None
        self.pos_embed = self.create_parameter([1, (img // patch) ** 2 + tokens, dim],
                                               default_initializer=nn.initializer.Normal(std=0.02))
        self.blocks = nn.LayerList([Block(dim, heads, Attention(dim, heads, c_from_x, unbind)) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        self.head_dist = nn.Linear(dim, 10) if distilled else None

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose([0, 2, 1])
        b = x.shape[0]
        tokens = [self.cls_token.expand([b, -1, -1])]
        if self.dist_token is not None:
            tokens.append(self.dist_token.expand([b, -1, -1]))
        x = paddle.concat(tokens + [x], axis=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.head_dist is None:
            return self.head(x[:, 0])
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


class MHABlock(nn.Layer):
    """paddle.nn.MultiHeadAttention on tokens (q_proj, k_proj, v_proj, out_proj; `num_heads`, `head_dim`)."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.embed = nn.Conv2D(3, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiHeadAttention(dim, heads)
        self.mlp = Mlp(dim, dim * 2)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose([0, 2, 1])
        y = self.norm(x)
        x = x + self.attn(y, y, y)
        x = x + self.mlp(x)
        return self.head(x.mean(axis=1))


def window_partition(x, size):
    """[B, H, W, C] -> [B * H/size * W/size, size*size, C] (Swin)."""
    b, h, w, c = x.shape
    x = x.reshape([b, h // size, size, w // size, size, c]).transpose([0, 1, 3, 2, 4, 5])
    return x.reshape([-1, size * size, c])


def window_reverse(windows, size, h, w):
    c = windows.shape[-1]
    x = windows.reshape([-1, h // size, w // size, size, size, c]).transpose([0, 1, 3, 2, 4, 5])
    return x.reshape([-1, h, w, c])


class WindowAttention(nn.Layer):
    """Swin's window attention: a relative position bias table [(2w-1)^2, heads] gathered per pair of tokens."""

    def __init__(self, dim, heads, window):
        super().__init__()
        self.num_heads, self.head_dim, self.window = heads, dim // heads, window
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.relative_position_bias_table = self.create_parameter(
            [(2 * window - 1) ** 2, heads], default_initializer=nn.initializer.Normal(std=0.02))
        coords = paddle.stack(paddle.meshgrid(paddle.arange(window), paddle.arange(window))).flatten(1)
        relative = (coords.unsqueeze(2) - coords.unsqueeze(1)).transpose([1, 2, 0]) + (window - 1)
        self.register_buffer("relative_position_index", relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1])

    def forward(self, x, mask=None):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.num_heads, self.head_dim]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.head_dim ** -0.5) @ k.transpose([0, 1, 3, 2])
        bias = self.relative_position_bias_table[self.relative_position_index.reshape([-1])]
        attn = attn + bias.reshape([n, n, -1]).transpose([2, 0, 1]).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.reshape([-1, windows, self.num_heads, n, n]) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape([-1, self.num_heads, n, n])
        x = (F.softmax(attn, axis=-1) @ v).transpose([0, 2, 1, 3]).reshape([b, n, -1])
        return self.proj(x)


class SwinBlock(nn.Layer):
    def __init__(self, dim, heads, size, window, shift):
        super().__init__()
        self.size, self.window, self.shift = size, window, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.mlp = Mlp(dim, dim * 4)
        if shift:
            region = paddle.zeros([1, size, size, 1])
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            label = 0
            for h in cuts:
                for w in cuts:
                    region[:, h, w, :] = label
                    label += 1
            ids = window_partition(region, window).squeeze(-1)
            mask = ids.unsqueeze(1) - ids.unsqueeze(2)
            self.register_buffer("attn_mask", paddle.where(mask != 0, paddle.full_like(mask, -100.0),
                                                           paddle.zeros_like(mask)))
        else:
            self.attn_mask = None

    def forward(self, x):
        b, n, c = x.shape
        y = self.norm1(x).reshape([b, self.size, self.size, c])
        if self.shift:
            y = paddle.roll(y, shifts=(-self.shift, -self.shift), axis=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.window), self.attn_mask), self.window, self.size,
                           self.size)
        if self.shift:
            y = paddle.roll(y, shifts=(self.shift, self.shift), axis=(1, 2))
        x = x + y.reshape([b, n, c])
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Layer):
    """[B, H*W, C] -> 2x2 neighbours concatenated along C -> LayerNorm(4C) -> Linear(4C, 2C)."""

    def __init__(self, size, dim):
        super().__init__()
        self.size = size
        self.norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim)

    def forward(self, x):
        b, n, c = x.shape
        x = x.reshape([b, self.size, self.size, c])
        x = paddle.concat([x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x.reshape([b, -1, 4 * c])))


class Swin(nn.Layer):
    """Patch embedding, a window block and a shifted window block, patch merging, mean over tokens, head."""

    def __init__(self, dim=16, heads=2, img=16, patch=2, window=4):
        super().__init__()
        size = img // patch
        self.patch_embed = nn.Conv2D(3, dim, patch, stride=patch)
        self.norm0 = nn.LayerNorm(dim)
        self.blocks = nn.LayerList([SwinBlock(dim, heads, size, window, 0),
                                    SwinBlock(dim, heads, size, window, window // 2)])
        self.merge = PatchMerging(size, dim)
        self.norm = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, 10)

    def forward(self, x):
        x = self.norm0(self.patch_embed(x).flatten(2).transpose([0, 2, 1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(self.merge(x)).mean(axis=1))


class SpatialReductionAttention(nn.Layer):
    """PVT's attention: q from every token, k and v from tokens reduced by a strided conv (+ LayerNorm)."""

    def __init__(self, dim, heads, size, ratio):
        super().__init__()
        self.num_heads, self.head_dim, self.size = heads, dim // heads, size
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, dim * 2), nn.Linear(dim, dim)
        self.sr = nn.Conv2D(dim, dim, ratio, stride=ratio) if ratio > 1 else None
        self.norm = nn.LayerNorm(dim) if ratio > 1 else None

    def forward(self, x):
        b, n, c = x.shape
        q = self.q(x).reshape([b, n, self.num_heads, self.head_dim]).transpose([0, 2, 1, 3])
        if self.sr is None:
            kv = self.kv(x)
        else:
            y = self.sr(x.transpose([0, 2, 1]).reshape([b, c, self.size, self.size])).reshape([b, c, -1])
            kv = self.kv(self.norm(y.transpose([0, 2, 1])))
        kv = kv.reshape([b, -1, 2, self.num_heads, self.head_dim]).transpose([2, 0, 3, 1, 4])
        attn = F.softmax((q @ kv[0].transpose([0, 1, 3, 2])) * self.head_dim ** -0.5, axis=-1)
        return self.proj((attn @ kv[1]).transpose([0, 2, 1, 3]).reshape([b, n, -1]))


class DWConvMlp(nn.Layer):
    """PVTv2 / SegFormer's Mix-FFN: fc1, a 3x3 depthwise conv on the tokens as an image, GELU, fc2."""

    def __init__(self, dim, hidden, size):
        super().__init__()
        self.size = size
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dwconv = nn.Conv2D(hidden, hidden, 3, padding=1, groups=hidden)

    def forward(self, x):
        b, n, _ = x.shape
        y = self.fc1(x).transpose([0, 2, 1]).reshape([b, -1, self.size, self.size])
        return self.fc2(F.gelu(self.dwconv(y).flatten(2).transpose([0, 2, 1])))


class PVTBlock(nn.Layer):
    def __init__(self, dim, heads, size, ratio):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SpatialReductionAttention(dim, heads, size, ratio)
        self.mlp = DWConvMlp(dim, dim * 4, size)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PVT(nn.Layer):
    """Overlapping patch embedding (a strided 3x3 conv + LayerNorm), two PVT blocks, back to [B, C, H, W]."""

    def __init__(self, dim=32, heads=2, img=16, ratio=2, classes=10):
        super().__init__()
        self.size = img // 2
        self.patch_embed = nn.Conv2D(3, dim, 3, stride=2, padding=1)
        self.embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.LayerList([PVTBlock(dim, heads, self.size, ratio) for _ in range(2)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def features(self, x):
        x = self.embed_norm(self.patch_embed(x).flatten(2).transpose([0, 2, 1]))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.features(x).mean(axis=1))


class ConvProjectionAttention(nn.Layer):
    """CvT's attention: q, k, v from depthwise conv + BatchNorm projections of the tokens as an image
    (k and v strided), then linear projections."""

    def __init__(self, dim, heads, size):
        super().__init__()
        self.num_heads, self.head_dim, self.size = heads, dim // heads, size
        self.conv_q = nn.Sequential(nn.Conv2D(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2D(dim))
        self.conv_kv = nn.Sequential(nn.Conv2D(dim, dim, 3, stride=2, padding=1, groups=dim), nn.BatchNorm2D(dim))
        self.proj_q, self.proj_k, self.proj_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def heads(self, t, layer):
        b, n, _ = t.shape
        return layer(t).reshape([b, n, self.num_heads, self.head_dim]).transpose([0, 2, 1, 3])

    def forward(self, x):
        b, n, c = x.shape
        image = x.transpose([0, 2, 1]).reshape([b, c, self.size, self.size])
        q = self.conv_q(image).flatten(2).transpose([0, 2, 1])
        kv = self.conv_kv(image).flatten(2).transpose([0, 2, 1])
        q, k, v = self.heads(q, self.proj_q), self.heads(kv, self.proj_k), self.heads(kv, self.proj_v)
        attn = F.softmax(paddle.matmul(q, k, transpose_y=True) * self.head_dim ** -0.5, axis=-1)
        return self.proj((attn @ v).transpose([0, 2, 1, 3]).reshape([b, n, -1]))


class CvT(nn.Layer):
    """Conv token embedding (strided 7x7 conv + LayerNorm), two blocks with conv projections, head."""

    def __init__(self, dim=32, heads=2, img=16):
        super().__init__()
        size = img // 4
        self.embed = nn.Conv2D(3, dim, 7, stride=4, padding=3)
        self.embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.LayerList([Block(dim, heads, ConvProjectionAttention(dim, heads, size)) for _ in range(2)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.embed_norm(self.embed(x).flatten(2).transpose([0, 2, 1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(axis=1))


class MobileViTAttention(nn.Layer):
    """MobileViT's attention on [B*P, N, C] patches: head_dim from the qkv width, heads axis before q/k/v."""

    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads = heads
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(x)
        qkv = qkv.reshape([b, n, 3, self.num_heads, qkv.shape[-1] // self.num_heads // 3]).transpose([0, 3, 2, 1, 4])
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        attn = F.softmax(paddle.matmul(q * q.shape[-1] ** -0.5, k.transpose([0, 1, 3, 2])), axis=-1)
        out = paddle.matmul(attn, v)
        return self.proj(out.transpose([0, 2, 1, 3]).reshape([b, n, out.shape[1] * out.shape[3]]))


class MobileViTBlock(nn.Layer):
    """Local 3x3 + 1x1 convs, unfolding into 2x2 patches ([B*C*nh, ph, nw, pw] reshapes as the zoo does),
    a transformer on the patches, folding back, a 1x1 conv, concat with the input and a 3x3 fusion conv."""

    def __init__(self, dim=16, hidden=32, heads=2, patch=2):
        super().__init__()
        self.patch = patch
        self.conv1 = nn.Sequential(nn.Conv2D(dim, dim, 3, padding=1), nn.BatchNorm2D(dim), nn.Silu())
        self.conv2 = nn.Conv2D(dim, hidden, 1, bias_attr=False)
        self.transformer = Block(hidden, heads, MobileViTAttention(hidden, heads))
        self.norm = nn.LayerNorm(hidden)
        self.conv3 = nn.Sequential(nn.Conv2D(hidden, dim, 1), nn.BatchNorm2D(dim), nn.Silu())
        self.conv4 = nn.Sequential(nn.Conv2D(2 * dim, dim, 3, padding=1), nn.BatchNorm2D(dim), nn.Silu())

    def forward(self, x):
        h = x
        x = self.conv2(self.conv1(x))
        p = self.patch
        _, c, height, width = x.shape
        nh, nw = height // p, width // p
        x = x.reshape([-1, p, nw, p]).transpose([0, 2, 1, 3]).reshape([-1, c, nh * nw, p * p])
        x = x.transpose([0, 3, 2, 1]).reshape([-1, nh * nw, c])
        x = self.norm(self.transformer(x))
        x = x.reshape([-1, p * p, nh * nw, c]).transpose([0, 3, 2, 1])
        x = x.reshape([-1, nw, p, p]).transpose([0, 2, 1, 3]).reshape([-1, c, nh * p, nw * p])
        return self.conv4(paddle.concat([h, self.conv3(x)], axis=1))


class MobileViT(nn.Layer):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, 16, 3, stride=2, padding=1), nn.BatchNorm2D(16), nn.Silu())
        self.block = MobileViTBlock()
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.block(self.stem(x)), 1).flatten(1))


class SVTRAttention(nn.Layer):
    """The SVTR mixer of PaddleOCR's recognisers: `reshape((0, -1, 3, num_heads, head_dim))`, and back to
    `self.dim`, an attribute slimkit does not know: it prunes heads once `svtr_attention_hook` is registered."""

    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads, self.head_dim, self.dim = heads, dim // heads, dim
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        qkv = self.qkv(x).reshape((0, -1, 3, self.num_heads, self.head_dim)).transpose((2, 0, 3, 1, 4))
        q, k, v = qkv[0] * self.head_dim ** -0.5, qkv[1], qkv[2]
        attn = F.softmax(q.matmul(k.transpose((0, 1, 3, 2))), axis=-1)
        return self.proj((attn.matmul(v)).transpose((0, 2, 1, 3)).reshape((0, -1, self.dim)))


def svtr_attention_hook(layer, change):
    """The removal hook SVTRAttention needs (slimkit.pruning.layer_hooks): its head count and inner width."""
    (_, heads), = change.heads
    layer.num_heads, layer.dim = heads, heads * layer.head_dim


class SVTRNeck(nn.Layer):
    """PP-OCR's EncoderWithSVTR: conv 3x3 and 1x1 down to the mixing width, tokens through two global
    mixing blocks and a LayerNorm, back to an image, 1x1 conv, concat with the input, 3x3 and 1x1 convs."""

    def __init__(self, channels=32, hidden=32, heads=4, dims=16):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2D(channels, channels // 4, 3, padding=1), nn.BatchNorm2D(channels // 4),
                                   nn.Swish())
        self.conv2 = nn.Sequential(nn.Conv2D(channels // 4, hidden, 1), nn.BatchNorm2D(hidden), nn.Swish())
        self.blocks = nn.LayerList([Block(hidden, heads, SVTRAttention(hidden, heads)) for _ in range(2)])
        self.norm = nn.LayerNorm(hidden)
        self.conv3 = nn.Sequential(nn.Conv2D(hidden, channels, 1), nn.BatchNorm2D(channels), nn.Swish())
        self.conv4 = nn.Sequential(nn.Conv2D(2 * channels, channels // 4, 3, padding=1),
                                   nn.BatchNorm2D(channels // 4), nn.Swish())
        self.conv1x1 = nn.Sequential(nn.Conv2D(channels // 4, dims, 1), nn.BatchNorm2D(dims), nn.Swish())

    def forward(self, x):
        h = x
        z = self.conv2(self.conv1(x))
        _, c, height, width = z.shape
        z = z.flatten(2).transpose([0, 2, 1])
        for block in self.blocks:
            z = block(z)
        z = self.norm(z).reshape([0, height, width, c]).transpose([0, 3, 1, 2])
        return self.conv1x1(self.conv4(paddle.concat((h, self.conv3(z)), axis=1)))


class SVTRRecognizer(nn.Layer):
    """A CRNN-style recogniser around the neck: a conv backbone to [B, 32, 1, W/4], the neck, a CTC head."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2D(3, 32, 3, stride=2, padding=1), nn.BatchNorm2D(32), nn.ReLU(),
                                      nn.Conv2D(32, 32, 3, stride=(4, 2), padding=1), nn.BatchNorm2D(32), nn.ReLU())
        self.neck = SVTRNeck()
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        z = self.neck(self.backbone(x)).mean(axis=2).transpose([0, 2, 1])  # [B, W/4, dims]
        return self.head(z).mean(axis=1)


class MiTStage(nn.Layer):
    """One stage of SegFormer's Mix Transformer: overlapping patch embedding, a block, LayerNorm, image again."""

    def __init__(self, c_in, dim, heads, size, ratio, stride):
        super().__init__()
        self.size = size
        self.patch_embed = nn.Conv2D(c_in, dim, 2 * stride - 1, stride=stride, padding=stride - 1)
        self.embed_norm = nn.LayerNorm(dim)
        self.block = PVTBlock(dim, heads, size, ratio)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.embed_norm(self.patch_embed(x).flatten(2).transpose([0, 2, 1]))
        b = x.shape[0]
        return self.norm(self.block(x)).reshape([b, self.size, self.size, -1]).transpose([0, 3, 1, 2])


class SegFormer(nn.Layer):
    """Two MiT stages and the all-MLP decoder: per stage a linear layer to one width, upsampled, concatenated,
    fused by a 1x1 conv, classified, upsampled to the input; `[logits]` as PaddleSeg returns them."""

    def __init__(self, img=32, classes=4, width=16):
        super().__init__()
        self.stages = nn.LayerList([MiTStage(3, 16, 2, img // 4, 2, 4), MiTStage(16, 32, 2, img // 8, 1, 2)])
        self.linear_c = nn.LayerList([nn.Linear(16, width), nn.Linear(32, width)])
        self.fuse = nn.Sequential(nn.Conv2D(2 * width, width, 1), nn.BatchNorm2D(width), nn.ReLU())
        self.pred = nn.Conv2D(width, classes, 1)

    def forward(self, x):
        features, y = [], x
        for stage in self.stages:
            y = stage(y)
            features.append(y)
        size = features[0].shape[2:]
        decoded = []
        for feature, linear in zip(features, self.linear_c):
            b, _, h, w = feature.shape
            t = linear(feature.flatten(2).transpose([0, 2, 1])).transpose([0, 2, 1]).reshape([b, -1, h, w])
            decoded.append(F.interpolate(t, size=size, mode="bilinear", align_corners=False))
        logits = self.pred(self.fuse(paddle.concat(decoded[::-1], axis=1)))
        return [F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)]
