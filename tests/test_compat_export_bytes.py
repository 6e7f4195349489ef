"""An exported program depends only on the model: weight names and Python call stacks are kept out of it.

Both workarounds are needed (a plain `paddle.jit.save` of the same weights gives other
bytes from a copy of the model and from another call site) and work (slimkit's export of
the two gives the same bytes, and the weights keep their own names after).
"""

import copy

import paddle

import slimkit
from slimkit import compat
from slimkit.deploy.paddle_inference import export_float, input_spec


def small():
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


def plain_save(model, prefix):
    with compat.legacy_ir():
        paddle.jit.save(model, str(prefix), input_spec=input_spec([1, 1, 8, 8]))
    return (prefix.parent / (prefix.name + ".pdmodel")).read_bytes()


def save_here(model, prefix):  # another call site: another Python stack in the feed/fetch ops
    return plain_save(model, prefix)


def test_a_plain_export_of_equal_weights_differs_by_names_and_call_stacks(tmp_path):
    model = small()
    twin = copy.deepcopy(model)
    assert plain_save(model, tmp_path / "a" / "m") != plain_save(twin, tmp_path / "b" / "m"), \
        "a copy's weight names no longer reach the program: stable_export_names is not needed"
    with compat.stable_export_names(model):
        first = plain_save(model, tmp_path / "c" / "m")
    with compat.stable_export_names(model):
        second = save_here(model, tmp_path / "d" / "m")
    assert first != second, "the call stack no longer reaches the program: strip_callstacks is not needed"


def test_slimkits_export_is_the_same_bytes_for_a_copy_and_keeps_the_weight_names(tmp_path):
    model = small()
    twin = copy.deepcopy(copy.deepcopy(model))
    names = [p.name for p in twin.parameters()]
    export_float(model, tmp_path / "a", [1, 1, 8, 8])
    export_float(twin, tmp_path / "b", [1, 1, 8, 8])
    for suffix in (".pdmodel", ".pdiparams"):
        assert (tmp_path / "a" / f"model{suffix}").read_bytes() == (tmp_path / "b" / f"model{suffix}").read_bytes()
    assert [p.name for p in twin.parameters()] == names
    x = paddle.randn([2, 1, 8, 8])
    model.eval()
    from slimkit.deploy.paddle_inference import InferenceModel

    exported = InferenceModel(tmp_path / "b" / "model", runtime="cpu").run(x.numpy())
    assert abs(exported - model(x).numpy()).max() < 1e-5, "the program without call stacks computes the same"


def test_the_export_is_traced_in_eval_mode_whatever_mode_the_model_is_in(tmp_path):
    model = small()
    model.train()
    export_float(model, tmp_path / "from_train", [1, 1, 8, 8])
    assert model.training and all(layer.training for layer in model.sublayers()), "the model's mode comes back"
    model.eval()
    export_float(model, tmp_path / "from_eval", [1, 1, 8, 8])
    assert (tmp_path / "from_train" / "model.pdmodel").read_bytes() == \
        (tmp_path / "from_eval" / "model.pdmodel").read_bytes(), "one inference program (batch norm's statistics)"
