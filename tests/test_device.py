"""`device: auto | cpu | gpu | gpu:N`: checked against the installed Paddle before any work, applied to the
whole run, named in the reports, and the user's `paddle.get_device()` left as it was.

The GPU paths cannot run on a CPU build: where a test needs another build, it fakes the one
function slimkit asks (`slimkit.device.cuda`); the last test runs a tiny pipeline on a real GPU
and skips here.
"""

import json

import numpy as np
import paddle
import pytest

import slimkit
from slimkit import Finetune, Pipeline
from slimkit.core import device as devices
from slimkit.core.errors import ConfigError
from slimkit.deploy import InferenceModel, stage_export_prefix
from slimkit.deploy.stage_latency import latency_method
from slimkit.core.cpu import cpu_description
from slimkit.report.timing import eager_latency_method
from slimkit.report.rows import ReportConfig
from slimkit.run.cli import main

SHAPE = [1, 1, 8, 8]
REPORT = {"latency_runs": 2, "latency_warmup": 0, "latency_rounds": 1}
TRAIN = {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "progress": False}
CPU_ONLY = (False, 0)
YAML = """data: {name: digits}
model: {name: small_cnn}
train: {epochs: 1, max_steps_per_epoch: 2, progress: false}
stages:
  - {type: finetune}
"""


def small_cnn():
    paddle.seed(0)
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


@pytest.fixture
def set_device_calls(monkeypatch):
    """Every paddle.set_device call, in order (they still happen)."""
    calls, real = [], paddle.set_device

    def spy(device):
        calls.append(device)
        return real(device)
    monkeypatch.setattr(paddle, "set_device", spy)
    return calls


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory):
    """A tiny pipeline run with the default device (auto)."""
    out = tmp_path_factory.mktemp("device")
    pipeline = Pipeline(small_cnn(), digits, [Finetune(name="train")], out_dir=out, train=TRAIN, report=REPORT,
                        verbose=False)
    return pipeline, pipeline.run(), out


# --- resolving the option ---------------------------------------------------------------------
def test_auto_is_the_cpu_on_this_cpu_build():
    if devices.cuda()[1]:
        pytest.skip("this Paddle sees a GPU")
    assert devices.resolve("auto") == "cpu" and devices.resolve("cpu") == "cpu"


@pytest.mark.parametrize("build, asked, used", [
    ((True, 2), "auto", "gpu:0"), ((True, 2), "gpu", "gpu:0"), ((True, 2), " GPU:1 ", "gpu:1"),
    ((True, 0), "auto", "cpu"), ((False, 0), "auto", "cpu"), ((True, 2), "cpu", "cpu")])
def test_resolve_against_the_build(monkeypatch, build, asked, used):
    monkeypatch.setattr(devices, "cuda", lambda: build)
    assert devices.resolve(asked) == used


@pytest.mark.parametrize("asked, used", [("auto", "gpu:1"), ("gpu", "gpu:1"), ("gpu:0", "gpu:0")])
def test_a_launched_rank_takes_the_gpu_the_launcher_gave_it(monkeypatch, asked, used):
    monkeypatch.setattr(devices, "cuda", lambda: (True, 2))
    monkeypatch.setenv("FLAGS_selected_gpus", "1")  # set per rank by paddle.distributed.launch
    assert devices.resolve(asked) == used


@pytest.mark.parametrize("build, asked, message", [
    (CPU_ONLY, "gpu", f"'gpu' needs a GPU, and paddle {paddle.__version__} here is compiled without CUDA"),
    (CPU_ONLY, "gpu:1", f"'gpu:1' needs a GPU, and paddle {paddle.__version__} here is compiled without CUDA"),
    ((True, 2), "gpu:2", f"'gpu:2' is not available: paddle {paddle.__version__} here sees 2 GPUs (gpu:0 to gpu:1)"),
    ((True, 1), "gpu:1", f"'gpu:1' is not available: paddle {paddle.__version__} here sees 1 GPU (gpu:0 to gpu:0)"),
    ((True, 0), "gpu", f"'gpu' is not available: paddle {paddle.__version__} here sees no GPU")])
def test_an_unavailable_gpu_names_the_reason(monkeypatch, build, asked, message):
    monkeypatch.setattr(devices, "cuda", lambda: build)
    with pytest.raises(ConfigError) as err:
        devices.resolve(asked)
    assert err.value.path == "device" and err.value.message == f"device: {message}"


@pytest.mark.parametrize("bad", ["tpu", "gpu:x", "gpu:", "cuda", 0, None])
def test_a_malformed_device_lists_the_choices(bad):
    with pytest.raises(ConfigError) as err:
        devices.parse(bad)
    assert err.value.message == f"device: {bad!r} is not a device" and err.value.hint == "use auto, cpu, gpu or gpu:N"


def test_tensorrt_needs_a_gpu_and_a_build_with_it(monkeypatch):
    with pytest.raises(ConfigError, match="TensorRT runs on a GPU, and this run's device is cpu"):
        devices.check_tensorrt("cpu")
    monkeypatch.setattr(devices, "tensorrt_version", lambda: (0, 0, 0))
    with pytest.raises(ConfigError, match=f"paddle {paddle.__version__} here is compiled without TensorRT"):
        devices.check_tensorrt("gpu:0")
    monkeypatch.setattr(devices, "tensorrt_version", lambda: (8, 6, 1))
    devices.check_tensorrt("gpu:0")


def test_using_restores_the_callers_device_even_on_error(monkeypatch):
    current = ["gpu:1"]  # the caller's device is another than the block's, so that putting it back shows
    monkeypatch.setattr(paddle, "get_device", lambda: current[0])
    monkeypatch.setattr(paddle, "set_device", lambda device: current.__setitem__(0, device))
    with pytest.raises(RuntimeError):
        with devices.using("cpu") as used:
            assert used == "cpu" and current[0] == "cpu"
            raise RuntimeError("stop")
    assert current[0] == "gpu:1"


# --- before any work: YAML (run and check) and Python -------------------------------------------
@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("build, line, message", [
    (CPU_ONLY, "device: gpu", "here is compiled without CUDA"),
    ((True, 1), "device: 'gpu:3'", "here sees 1 GPU (gpu:0 to gpu:0)"),
    (CPU_ONLY, "report: {tensorrt: true}", "report.tensorrt: TensorRT runs on a GPU, and this run's device is cpu"),
    (CPU_ONLY, "device: tpu", "device: 'tpu' is not a device")])
def test_yaml_device_problems_exit_2_before_any_work(tmp_path, capsys, monkeypatch, command, build, line, message):
    monkeypatch.setattr(devices, "cuda", lambda: build)
    path = tmp_path / "run.yaml"
    path.write_text(YAML + line + "\n")
    out = tmp_path / "out"
    assert main([command, str(path), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_pipeline_on_an_unavailable_gpu_stops_before_any_work(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cuda", lambda: CPU_ONLY)
    pipeline = Pipeline(small_cnn(), digits, [Finetune()], out_dir=tmp_path / "out", train=TRAIN, device="gpu",
                        verbose=False)
    with pytest.raises(ConfigError, match="compiled without CUDA") as err:
        pipeline.run()
    assert err.value.path == "device" and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="compiled without CUDA"):
        slimkit.run.preflight.check_pipeline(pipeline)
    with pytest.raises(ConfigError, match="'gpu:a' is not a device"):
        Pipeline(small_cnn(), digits, [Finetune()], out_dir=tmp_path / "out", device="gpu:a")


def test_tensorrt_on_a_cpu_run_stops_before_any_work(digits, tmp_path):
    pipeline = Pipeline(small_cnn(), digits, [Finetune()], out_dir=tmp_path / "out", train=TRAIN, device="cpu",
                        report={**REPORT, "tensorrt": True}, verbose=False)
    with pytest.raises(ConfigError, match="TensorRT runs on a GPU") as err:
        pipeline.run()
    assert err.value.path == "report.tensorrt" and not (tmp_path / "out").exists()


# --- a run: the device applied, recorded and put back ----------------------------------------------
def test_a_run_names_its_device_in_every_report(run):
    pipeline, reports, out = run
    cpu = f"CPU {cpu_description()}"
    saved = json.loads((out / "report.json").read_text())
    assert saved["device"] == {"requested": "auto", "used": "cpu", "name": cpu}
    assert (out / "report.md").read_text().splitlines()[2] == f"Device: {cpu}."
    for r in reports:
        assert r.extra["device"] == "cpu"
        assert r.latency_method.endswith(f"; {cpu}") and "(oneDNN, 1 thread)" in r.latency_method
    assert pipeline.used_device == "cpu" and devices.of_model(pipeline.model) == "cpu"


def test_a_run_puts_the_sessions_device_back(digits, tmp_path, set_device_calls):
    before = paddle.get_device()
    Pipeline(small_cnn(), digits, [Finetune(epochs=0)], out_dir=tmp_path, train=TRAIN, device="cpu",
             report={**REPORT, "runtime": "eager"}, verbose=False).run()
    assert set_device_calls[0] == "cpu" and set_device_calls[-1] == before and paddle.get_device() == before


def test_latency_methods_name_the_device_and_cpu_flags_only_on_the_cpu(monkeypatch):
    monkeypatch.setattr(devices, "describe", lambda d: "GPU 0 (Fake card, CUDA 12.6)" if d != "cpu" else "CPU x")
    cfg = ReportConfig(**REPORT)
    gpu = latency_method(cfg, SHAPE, device="gpu:0")
    for fact in ("gpu:0", "Paddle's GPU kernels", "[1, 1, 8, 8]", "GPU 0 (Fake card, CUDA 12.6)",
                 "wall time"):  # a GPU run is timed on the wall clock
        assert fact in gpu
    assert "oneDNN" not in gpu and "CPU" not in gpu
    assert latency_method(ReportConfig(**REPORT, tensorrt=True), SHAPE, device="gpu:1").startswith(
        "Paddle Inference predictor of the stage's export (gpu:1, TensorRT)")
    assert latency_method(cfg, SHAPE, device="cpu").startswith(
        "Paddle Inference predictor of the stage's export (oneDNN, 1 thread)")
    eager = eager_latency_method(SHAPE, 0, 2, "gpu:0")
    assert "gpu:0 (synchronised before each clock read)" in eager and "CPU" not in eager
    assert "CPU (" in eager_latency_method(SHAPE, 0, 2, "cpu")


def test_predictor_refuses_a_gpu_or_tensorrt_it_cannot_have(run, monkeypatch):
    prefix = stage_export_prefix(run[2] / "01-train")
    assert InferenceModel(prefix).device == "cpu"  # the session's device
    with pytest.raises(ConfigError, match="TensorRT runs on a GPU"):
        InferenceModel(prefix, tensorrt=True)
    monkeypatch.setattr(devices, "cuda", lambda: CPU_ONLY)
    with pytest.raises(ConfigError, match="compiled without CUDA"):
        InferenceModel(prefix, device="gpu:0")


def test_bench_on_an_unavailable_gpu_exits_2(run, capsys, monkeypatch):
    monkeypatch.setattr(devices, "cuda", lambda: CPU_ONLY)
    before = (run[2] / "report.json").read_text()
    assert main(["bench", str(run[2]), "--device", "gpu", "--runs", "1", "--warmup", "0"]) == 2
    assert "compiled without CUDA" in capsys.readouterr().err
    assert (run[2] / "report.json").read_text() == before


# --- the one-call functions ---------------------------------------------------------------------------
def test_prune_and_sensitive_run_where_the_model_is_and_refuse_a_missing_gpu(monkeypatch):
    before = paddle.get_device()
    model = small_cnn()
    seen = []  # the session's device while prune runs the model
    hook = model.register_forward_pre_hook(lambda layer, inputs: seen.append(paddle.get_device()))
    result = slimkit.prune(model, SHAPE, ratios={"features.0": 0.5})
    hook.remove()
    assert result.layers == [("features.0", 16, 8)] and seen and set(seen) == {"cpu"}
    monkeypatch.setattr(devices, "cuda", lambda: CPU_ONLY)
    weights = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="compiled without CUDA"):
        slimkit.prune(model, SHAPE, ratios=0.5, device="gpu")
    with pytest.raises(ConfigError, match="compiled without CUDA"):
        slimkit.sensitive(model, SHAPE, lambda m: 1.0, ratios=[0.5], device="gpu", progress=False)
    assert all(np.array_equal(v.numpy(), weights[k]) for k, v in model.state_dict().items())
    assert paddle.get_device() == before


# --- on a real GPU (skipped where the installed Paddle has no CUDA) -------------------------------------
@pytest.mark.gpu
def test_a_tiny_pipeline_runs_on_the_gpu(digits, tmp_path):
    with devices.using("cpu"):
        model = small_cnn()
    before = paddle.get_device()
    pipeline = Pipeline(model, digits, [Finetune(name="train")], out_dir=tmp_path, train=TRAIN, report=REPORT,
                        device="gpu", verbose=False)
    reports = pipeline.run()
    assert paddle.get_device() == before
    assert devices.of_model(model) == "cpu" and devices.of_model(pipeline.model) == "gpu:0"  # the input stays
    assert all(r.extra["device"] == "gpu:0" and "gpu:0" in r.latency_method for r in reports)
    assert json.loads((tmp_path / "report.json").read_text())["device"]["used"] == "gpu:0"
    assert reports[1].top1 > 0.1
