"""Any output structure (one-element list, dict, aux heads, nesting): every output keeps its channels.

The check after removal compares the pruned model's eager outputs with the unpruned model's
(same containers, same shapes); sizes the trace leaves symbolic (an upsampling to the
input's size) never count.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from prune_checks import prune_and_check

SHAPE = [1, 3, 16, 16]


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


@pytest.mark.parametrize("aux", [False, True])
def test_encoder_decoder_with_list_output_prunes(tmp_path, aux):
    model, graph, result = prune_and_check(lambda: EncoderDecoder(aux=aux), SHAPE, out_dim=None, tmp_path=tmp_path)
    assert graph.output_structure == ("list", [[1, 4, 16, 16]] + ([[1, 4, 16, 16]] if aux else []))
    heads = {"head", "aux"} if aux else {"head"}
    assert set(result.skipped) == heads and all("output" in result.skipped[h] for h in heads)
    assert result.flops_after < 0.85 * result.flops_before


def test_dict_output_detector_prunes(tmp_path):
    model, graph, result = prune_and_check(Detector, [1, 3, 32, 32], out_dim=None, tmp_path=tmp_path)
    assert set(graph.output_structure) == {"scores", "boxes"}
    assert graph.output_structure["boxes"][0] == "tuple"
    assert set(result.skipped) == {"cls", "box"}
    # The neck's laterals and the smoothing layer add into one stream: one group.
    assert set(graph.group("lat3").roots) == {"lat3", "lat4", "lat5"}
    assert result.flops_after < 0.85 * result.flops_before


def test_single_tensor_output_structure_is_recorded():
    from slimkit.pruning import analyze

    graph = analyze(nn.Sequential(nn.Conv2D(3, 4, 3)), [1, 3, 8, 8])
    assert graph.output_structure == [1, 4, 6, 6] and graph.output_shapes == [[1, 4, 6, 6]]
