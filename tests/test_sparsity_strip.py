"""strip_masks makes pruning permanent: no mask tensors left, the same outputs, a plain state dict."""

import copy

import numpy as np
import paddle
from conftest import outputs

import slimkit
from slimkit import SparsePruning, load_model, save_model
from slimkit.sparsity import masked_layers, sparse_prunable_layers, sparsify, strip_masks
from slimkit.strategies.base import Context
from slimkit.strategies.sparse_pruning import read_sparse_encoding, write_sparse_encoding


def test_strip_removes_masks_and_keeps_outputs(trained_cnn):
    model = copy.deepcopy(trained_cnn)
    plain_keys = set(model.state_dict())
    sparsify(model, 0.7, method="neuron", skip=["classifier.3"])
    sparsify(model, 0.6, skip=["classifier"])
    assert {k for k in model.state_dict() if k.endswith("_mask")} == {
        "features.0.weight_mask", "features.3.weight_mask", "features.7.weight_mask",
        "classifier.1.weight_mask", "classifier.1.bias_mask"}
    masked_out = outputs(model, [4, 1, 8, 8])
    zeros_before = {n: int((l.weight.numpy() == 0).sum()) for n, l in sparse_prunable_layers(model).items()}
    strip_masks(model)
    assert masked_layers(model) == {}
    assert set(model.state_dict()) == plain_keys
    np.testing.assert_array_equal(outputs(model, [4, 1, 8, 8]), masked_out)
    assert {n: int((l.weight.numpy() == 0).sum()) for n, l in sparse_prunable_layers(model).items()} == zeros_before
    # a stripped model is a plain model: it trains without masks and its zeros may regrow
    assert all(not l._buffers for l in sparse_prunable_layers(model).values())


def test_stripped_model_saves_and_loads_into_a_fresh_model(tmp_path, trained_cnn):
    model = copy.deepcopy(trained_cnn)
    sparsify(model, 0.9)
    strip_masks(model)
    save_model(model, tmp_path)
    fresh = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    load_model(tmp_path, fresh)
    np.testing.assert_array_equal(outputs(fresh, [2, 1, 8, 8]), outputs(model, [2, 1, 8, 8]))


def test_unstripped_stage_restores_its_masks_from_a_checkpoint(tmp_path, digits, trained_cnn):
    engine = slimkit.Engine(digits, {"max_steps_per_epoch": 3, "progress": False})
    ctx = Context(data=digits, engine=engine, input_shape=[1, 1, 8, 8], out_dir=tmp_path)
    stage = SparsePruning(sparsity=0.5, method="neuron", epochs=1, strip=False, skip=["classifier.3"])
    model = stage.apply(copy.deepcopy(trained_cnn), ctx)
    stage.save(model, tmp_path, ctx)
    fresh = copy.deepcopy(trained_cnn)
    restored = stage.restore(fresh, tmp_path, ctx)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key].numpy(), value.numpy(), err_msg=key)
    assert set(masked_layers(restored)) == {"classifier.1"}


def test_sparse_encoding_is_lossless_and_smaller(tmp_path, trained_cnn):
    model = copy.deepcopy(trained_cnn)
    sparsify(model, 0.9)
    strip_masks(model)
    state = model.state_dict()
    size = write_sparse_encoding(state, tmp_path / "w.npz")
    back = read_sparse_encoding(tmp_path / "w.npz")
    assert set(back) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)
    paddle.save(state, str(tmp_path / "dense.pdparams"))
    assert size < 0.2 * (tmp_path / "dense.pdparams").stat().st_size
