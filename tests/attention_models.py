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
