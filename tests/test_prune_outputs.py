"""Any output structure (one-element list, dict, aux heads, nesting): every output keeps its channels.

The check after removal compares the pruned model's eager outputs with the unpruned model's
(same containers, same shapes); sizes the trace leaves symbolic (an upsampling to the
input's size) never count.
"""

import paddle.nn as nn
import pytest
from prune_checks import prune_and_check
from structure_models import Detector, EncoderDecoder

SHAPE = [1, 3, 16, 16]


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
