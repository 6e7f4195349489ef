"""A pruned attention model runs in Paddle Inference: exported by `paddle.jit.save` (PIR, model.json, since
Paddle 3.3 traces GELU and attention's matmuls under PIR only) and loaded by InferenceModel."""

import numpy as np
import paddle
from attention_models import ViT

from slimkit.deploy import InferenceModel
from slimkit.deploy.paddle_inference import input_spec, program_file
from slimkit.pruning import prune

SHAPE = [1, 3, 16, 16]


def test_a_pruned_vit_exported_under_pir_runs_in_the_predictor(tmp_path):
    model = ViT()
    prune(model, SHAPE, ratios=0.5, round_to=1)
    model.eval()
    prefix = str(tmp_path / "model")
    paddle.jit.save(model, prefix, input_spec=input_spec(SHAPE))
    assert program_file(prefix) == prefix + ".json"
    x = np.random.RandomState(0).randn(*SHAPE).astype("float32")
    with paddle.no_grad():
        expected = model(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(InferenceModel(prefix, "onednn_int8", 1).run(x), expected, atol=1e-4)
    assert model.blocks[0].attn.num_heads == 2
