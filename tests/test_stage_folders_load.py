"""Every stage folder of every run loads with `slimkit.load_model(stage_dir)`, without the user's code."""

import numpy as np
import paddle
import pytest

import slimkit
from slimkit import QAT, FilterPruning, Finetune, Pipeline
from slimkit.quant.export import InferenceModel
from slimkit.run.config import RunConfig, build_pipeline

QUICK = {"epochs": 1, "batch_size": 32, "progress": False, "max_steps_per_epoch": 4}
STAGES = [{"type": "finetune", "name": "train"}, {"type": "filter_pruning", "ratios": 0.5},
          {"type": "finetune", "name": "recover"}, {"type": "qat", "epochs": 1}]


def logits(model, x):
    if isinstance(model, InferenceModel):
        return model.run(x)
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


@pytest.fixture(scope="module")
def config_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("config_run")
    pipeline = build_pipeline(RunConfig.from_dict({"train": QUICK, "stages": STAGES}), out, verbose=False)
    pipeline.run()
    return pipeline, out


def test_every_stage_of_a_config_run_loads(config_run, digits):
    pipeline, out = config_run
    x = digits.test.images[:32]
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert [f.name for f in folders] == ["00-baseline", "01-train", "02-filter_pruning", "03-recover", "04-qat"]
    loaded = {f.name: slimkit.load_model(f) for f in folders}
    pruned = loaded["03-recover"]
    assert isinstance(pruned, paddle.nn.Layer)
    assert pruned.features[0].weight.shape[0] == 8, "the pruned structure comes back"
    # the float stages are the very models measured: same weights, same outputs
    assert slimkit.count_flops(pruned, [1, 1, 8, 8])[0] == pipeline.reports[3].flops
    # the quantized stage comes back as its exported program, for Paddle Inference
    quantized = loaded["04-qat"]
    assert isinstance(quantized, InferenceModel)
    # ...computing what the quantized model computes (fake-quantized eager vs the exported program)
    agree = np.argmax(logits(quantized, x), 1) == np.argmax(logits(pipeline.model, x), 1)
    assert agree.mean() >= 0.9

def test_a_python_run_of_a_built_model_loads_too(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    pipeline = Pipeline(model, digits, [Finetune(epochs=1), FilterPruning(ratios=0.25)], train=QUICK,
                        out_dir=tmp_path, verbose=False)
    pipeline.run()
    x = digits.test.images[:16]
    again = slimkit.load_model(tmp_path / "02-filter_pruning")
    np.testing.assert_array_equal(logits(again, x), logits(pipeline.model, x))


def test_a_plain_layer_loads_from_its_inference_program(digits, tmp_path):
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(64, 10))
    pipeline = Pipeline(model, digits, [Finetune(epochs=1)], train=QUICK, out_dir=tmp_path, verbose=False)
    pipeline.run()
    stage = tmp_path / "01-finetune"
    assert (stage / "inference" / "model.pdmodel").is_file()  # every stage folder holds its Paddle Inference export
    again = slimkit.load_model(stage)  # no spec: the stage's own program
    x = digits.test.images[:16]
    np.testing.assert_allclose(logits(again, x), logits(pipeline.model, x), rtol=1e-4, atol=1e-5)


def test_qat_stage_of_python_run_loads(trained_cnn, digits, tmp_path):
    import copy

    pipeline = Pipeline(copy.deepcopy(trained_cnn), digits, [QAT(epochs=1)], train=QUICK, out_dir=tmp_path,
                        verbose=False)
    pipeline.run()
    assert isinstance(slimkit.load_model(tmp_path / "01-qat"), InferenceModel)
