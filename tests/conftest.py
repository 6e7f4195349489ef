import numpy as np
import paddle
import pytest

import slimkit
import slimkit.core.device


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled digits, split and normalised (no files needed)."""
    return slimkit.load_dataset(name="digits")


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """A small CNN trained on digits for a few epochs (shared; copy it before changing it)."""
    paddle.seed(0)
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    engine = slimkit.Engine(digits, {"epochs": 6, "batch_size": 32, "progress": False})
    engine.train(model)
    return model


@pytest.fixture(autouse=True)
def channel_block_of_8(monkeypatch):
    """The default channel multiple follows the CPU (16 with AVX-512, else 8): tests that count
    channels run with 8 whatever CPU runs them; tests/test_prune_alignment.py checks the choice."""
    from slimkit.pruning import alignment

    monkeypatch.setattr(alignment, "default_alignment", lambda: 8)


@pytest.fixture(autouse=True)
def paddle_session_is_restored():
    """Every test must leave Paddle in dynamic mode with PIR on, as users have it."""
    yield
    assert paddle.in_dynamic_mode(), "a test left Paddle in static mode"
    assert slimkit.compat.pir_enabled(), "a test left the legacy IR switched on"


def outputs(model, shape, seed=0):
    model.eval()
    x = paddle.to_tensor(np.random.RandomState(seed).randn(*shape).astype("float32"))
    with paddle.no_grad():
        return model(x).numpy()


def prune_small_cnn(model, keep):
    """small_cnn with only `keep` of its first two convs' filters (lowest L1 removed), in place."""
    slimkit.prune(model, [1, 1, 8, 8], criterion="l1", ratios={"features.0": 1 - keep, "features.3": 1 - keep})
    return model


def pytest_collection_modifyitems(config, items):
    compiled, count = slimkit.core.device.cuda()  # what `device: auto` asks too
    if count:
        return
    why = "is compiled without CUDA" if not compiled else "sees no GPU"
    skip = pytest.mark.skip(reason=f"needs a GPU: paddle {paddle.__version__} here {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
