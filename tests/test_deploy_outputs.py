"""A model with several outputs is exported with all of them; the one `task.output` names is the one evaluated.

`paddle.jit.save` flattens the outputs (a dict's values sorted by key), so the first exported
output is not always the model's first, nor the one the metric reads.
"""

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from slimkit import ConfigError, Finetune, Pipeline
from slimkit.deploy.onnx import OnnxModel, export_onnx
from slimkit.deploy.paddle_inference import InferenceModel, output_paths, output_position, stage_export_prefix

QUICK = {"epochs": 1, "batch_size": 32, "progress": False, "optimizer": "adam", "lr": 0.01}


class TwoHeads(nn.Layer):
    """A digits classifier returning its logits beside an untrained second head."""

    def __init__(self, as_dict):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.scores, self.other = nn.Linear(32, 10), nn.Linear(32, 10)
        self.as_dict = as_dict

    def forward(self, x):
        h = self.body(x)
        if self.as_dict:  # insertion order scores, aux; exported sorted: aux, scores
            return {"scores": self.scores(h), "aux": self.other(h)}
        return [self.other(h), self.scores(h)]


def eager(model, images):
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(images))
    return (out["scores"] if isinstance(out, dict) else out[1]).numpy()


@pytest.mark.parametrize("as_dict, output", [(True, "scores"), (False, -1)])
def test_the_stage_export_is_measured_on_the_output_the_metric_reads(digits, tmp_path, as_dict, output):
    paddle.seed(0)
    pipeline = Pipeline(TwoHeads(as_dict), digits, [Finetune(name="train")], train=QUICK, task={"output": output},
                        out_dir=tmp_path, verbose=False, report={"latency_runs": 1, "latency_warmup": 0})
    report = pipeline.run()[-1]
    prefix = stage_export_prefix(tmp_path / "01-train")
    exported = InferenceModel(prefix, "cpu")
    assert exported.output_paths == ([["aux"], ["scores"]] if as_dict else [[0], [1]])
    assert exported.position(output) == 1
    images = digits.test.images
    np.testing.assert_allclose(exported.run(images, output), eager(pipeline.model, images), atol=1e-5)
    got = exported.evaluate(pipeline.engine)
    assert got["top1"] == pytest.approx(report.top1, abs=2 / len(images)) and report.top1 > 0.3
    other = exported.evaluate_batches(pipeline.engine.batches("test"), pipeline.engine.task.metric(),
                                      "aux" if as_dict else 0)
    assert other["top1"] < report.top1 - 0.15, "the untrained head would be a different number"
    if as_dict:  # ONNX Runtime keeps Paddle's output order: the same output is verified and measured
        record = export_onnx(prefix, tmp_path / "onnx", lambda: pipeline.engine.batches("test"), output)
        assert record["ok"] and record["max_abs_diff"] <= 1e-4 and record["top1_agreement"] == 1.0
        onnx = OnnxModel(tmp_path / "onnx" / "model.onnx", output=output)
        assert onnx.evaluate(pipeline.engine)["top1"] == pytest.approx(got["top1"], abs=1e-9)


def test_output_positions_follow_the_export_order_of_nested_outputs():
    t = paddle.zeros([1])
    paths = output_paths({"scores": [t, t], "boxes": (t, t), "mask": t})
    assert paths == [["boxes", 0], ["boxes", 1], ["mask"], ["scores", 0], ["scores", 1]]
    assert [output_position(paths, key, 5) for key in (None, "boxes", "mask", "scores")] == [0, 0, 2, 3]
    assert output_position(output_paths([t, (t, t), t]), -1, 4) == 3
    assert output_position(output_paths(t), 0, 1) == 0
    with pytest.raises(ConfigError, match=r"task.output: the exported model has no output 'score'"):
        output_position(paths, "score", 5)
