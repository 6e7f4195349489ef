"""Reduce -> branches -> hierarchical add -> concat -> grouped expand (ESPNetV2's EESP block) prunes.

Each dilated depthwise branch carries the reduced channels, the hierarchical sums couple
them with themselves, and the grouped expand conv reads one branch per conv group through
the same weights: the reduced channels, the expand conv and the residual stream all prune.
"""


from prune_checks import prune_and_check
from structure_models import ESPNetLike


def test_reduce_branch_merge_block_prunes(tmp_path):
    model, graph, result = prune_and_check(ESPNetLike, [1, 3, 16, 16], tmp_path=tmp_path)
    assert set(result.skipped) == {"fc"}
    assert {"stem.0", "blocks.0.expand", "blocks.1.expand"} <= set(graph.group("stem.0").roots)
    reduced = graph.group("blocks.0.reduce")
    assert reduced.prunable and reduced.channel_multiple == 4
    block = model.blocks[0]
    kept = block.reduce.weight.shape[0]
    assert kept < 16 and block.cat_bn.weight.shape == [4 * kept] and block.expand.weight.shape[1] == kept
    assert result.flops_after < 0.85 * result.flops_before
