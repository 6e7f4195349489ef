"""Data-parallel runs (slimkit.parallel): 2 gloo processes on this CPU, and the one-process identities.

Two launches of `slimkit run --nproc 2` (each costs seconds: every rank imports paddle):
the first runs train -> count -> filter_pruning (sharded scan) -> recover and then fails on
rank 1; the second resumes it to the end. One single-process run with the same global batch
is the reference.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml
from report_checks import untimed

import slimkit
from slimkit.core import parallel
from slimkit.core.errors import ConfigError, ParallelError
from slimkit.core.surgery import model_digest
from slimkit.run.cli import main
from slimkit.run.config import build_pipeline, load_config
from slimkit.run.launcher import error_lines, failure, first_cause
from slimkit.train.metrics import BatchMean, SegmentationMetric, TopK, add_counts, counts

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # a hanging rank fails the test instead of the suite
PER_RANK_BATCH = 16


def config(go_file):
    return {"data": {"name": "digits"}, "model": {"name": "parallel_helpers:conv_net"},
            "train": {"epochs": 1, "batch_size": PER_RANK_BATCH, "lr": 0.05},
            "report": {"runtime": "eager", "latency_runs": 2, "latency_warmup": 1, "latency_rounds": 1},
            "stages": [{"type": "finetune", "name": "train"},
                       {"type": "parallel_helpers:CountEval", "name": "count"},
                       {"type": "filter_pruning", "criterion": "l1", "target_flops_reduction": 0.3,
                        "sensitivity": {"ratios": [0.25, 0.5], "eval_batches": 1}},
                       {"type": "finetune", "name": "recover"},
                       {"type": "parallel_helpers:FailOnRank", "name": "fail", "rank": 1, "unless": str(go_file)}]}


def launch(cfg, out, *flags):
    """`slimkit run --nproc 2` (as the console command starts it: the working folder not on the import path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-P", "-m", "slimkit", "run", str(cfg), "--out", str(out), "--nproc", "2",
                             *flags], capture_output=True, text=True, env=env, cwd=out.parent, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The failing launch, the resumed launch and the single-process reference (global batch 2 x 16)."""
    tmp = tmp_path_factory.mktemp("parallel")
    (tmp / "slimkit").mkdir()  # a user's folder of that name where the run starts: the ranks must not import it
    go = tmp / "go"
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(go)))
    failed = launch(cfg, tmp / "dp")
    done_before = {p.parent.name: p.read_text() for p in (tmp / "dp").glob("*/stage.json")}
    weights = {p.parent.name: p.stat().st_mtime_ns for p in (tmp / "dp").glob("*/model.pdparams")}
    go.write_text("")
    resumed = launch(cfg, tmp / "dp", "--resume")
    single = build_pipeline(load_config(cfg, [f"train.batch_size={2 * PER_RANK_BATCH}"]), tmp / "single",
                            verbose=False)
    single.run()
    return {"dp": tmp / "dp", "single": tmp / "single", "failed": failed,
            "done_before": done_before, "weights_before": weights, "resumed": resumed}


def test_a_failure_on_rank_1_ends_every_rank_with_one_message(runs):
    failed = runs["failed"]
    assert failed.returncode == 1, failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: rank 1 of 2: RuntimeError: deliberate failure on rank 1"], failed.stderr
    assert "error:" not in failed.stdout and "FLAGS" not in failed.stdout  # rank 0's output, up to the failure
    lines = failed.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.startswith("stage ")] == ["stage"]  # one table header
    assert any(line.startswith("recover ") for line in lines)  # and the rows of the finished stages
    assert errors[0] in (runs["dp"] / "run.log").read_text()
    assert sorted(runs["done_before"]) == ["00-baseline", "01-train", "02-count", "03-filter_pruning", "04-recover"]


def test_one_finetune_epoch_on_two_ranks_equals_one_process_with_the_global_batch(runs):
    dp = paddle.load(str(runs["dp"] / "01-train" / "model.pdparams"))
    single = paddle.load(str(runs["single"] / "01-train" / "model.pdparams"))
    assert sorted(dp) == sorted(single)
    before = paddle.load(str(runs["single"] / "00-baseline" / "model.pdparams"))
    for name in dp:
        assert not np.allclose(before[name].numpy(), single[name].numpy())  # the epoch did change it
        np.testing.assert_allclose(dp[name].numpy(), single[name].numpy(), rtol=0, atol=2e-5)


def test_the_sharded_scan_equals_the_unsharded_scan(runs):
    from slimkit.pruning.sensitivity import load_sensitivity, sensitive

    sharded = load_sensitivity(runs["dp"] / "03-filter_pruning" / "sensitivity.json")
    model = slimkit.load_model(runs["dp"] / "02-count")  # the weights the stage scanned
    engine = slimkit.Engine(slimkit.load_dataset(name="digits"), {"progress": False})
    unsharded = sensitive(model, [1, 1, 8, 8], lambda m: engine.evaluate(m, "val", max_batches=1)["top1"],
                          [0.25, 0.5], "l1", progress=False, engine=engine, compensate=True)  # the stage's default
    assert len(sharded) == 2 and sharded == unsharded  # both groups, every loss exactly equal


def test_a_data_parallel_evaluation_counts_every_test_sample_once(runs):
    row = next(r for r in json.loads((runs["dp"] / "report.json").read_text())["stages"] if r["stage"] == "count")
    assert row["extra"]["processes"] == 2
    assert row["extra"]["evaluated_samples"] == len(slimkit.load_dataset(name="digits").test) == 359


def test_resume_finishes_the_run_with_one_report_shaped_like_a_single_process_run(runs):
    resumed = runs["resumed"]
    assert resumed.returncode == 0, resumed.stderr
    dp = runs["dp"]
    for name, written in runs["weights_before"].items():  # restored from the first launch, not trained again
        assert (dp / name / "model.pdparams").stat().st_mtime_ns == written, name
    dp_report = json.loads((dp / "report.json").read_text())
    single_report = json.loads((runs["single"] / "report.json").read_text())
    assert dp_report["config"]["processes"] == 2 and "processes" not in single_report["config"]
    assert [r["stage"] for r in dp_report["stages"]] == [r["stage"] for r in single_report["stages"]] == \
        ["baseline", "train", "count", "filter_pruning", "recover", "fail"]
    for a, b in zip(dp_report["stages"], single_report["stages"]):
        a, b = untimed(a), untimed(b)
        assert sorted(a) == sorted(b) and sorted(a["extra"]) == sorted(b["extra"])
        assert [n["kind"] for n in a["notes"]] == [n["kind"] for n in b["notes"]]
    # The same files as the Python API writes (its run.log too); nothing from rank 1.
    assert sorted(p.name for p in dp.iterdir()) == sorted(p.name for p in runs["single"].iterdir())


# --- one process: nothing distributed, every helper an identity ------------------------------
def test_one_process_is_world_size_1_and_every_helper_is_the_identity():
    assert (parallel.world_size(), parallel.rank(), parallel.is_main(), parallel.active()) == (1, 0, True, False)
    value = {"a": [1, 2]}
    assert parallel.broadcast(value) is value and parallel.all_gather(value) == [value]
    assert parallel.all_sum([1, 2.5]) == [1, 2.5] and parallel.on_main(lambda: 7) == 7
    parallel.check_equal("anything", 1.0)
    parallel.check_equal("a digest one process never computes", lambda: pytest.fail("computed"))
    parallel.barrier()
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    before = model_digest(model)
    parallel.sync_state(model)
    assert model_digest(model) == before
    assert parallel.shard_range(10) == (0, 10) and parallel.label() == ""
    assert not parallel._state["initialized"]  # paddle.distributed was never initialised


def test_shards_cover_every_sample_once_and_follow_the_distributed_batch_sampler(monkeypatch):
    for n in (2, 3):
        for count in (0, 1, 7, 359):
            covered = []
            for r in range(n):
                monkeypatch.setattr(parallel, "world_size", lambda n=n: n)
                monkeypatch.setattr(parallel, "rank", lambda r=r: r)
                start, stop = parallel.shard_range(count)
                covered += list(range(start, stop))
            assert covered == list(range(count))
    # Rank r's rows of each global batch are those paddle.io.DistributedBatchSampler gives rank r.
    dataset = paddle.io.TensorDataset([paddle.arange(20, dtype="float32")])
    order = np.arange(20)
    for r in range(2):
        sampler = paddle.io.DistributedBatchSampler(dataset, 3, num_replicas=2, rank=r, drop_last=True)
        monkeypatch.setattr(parallel, "rank", lambda r=r: r)
        ours = [list(parallel.batch_share(order[i:i + 6], 3)) for i in range(0, 18, 6)]
        assert ours == [list(map(int, b)) for b in sampler]


def test_ranks_that_disagree_are_an_error_naming_them(monkeypatch):
    monkeypatch.setattr(parallel, "active", lambda: True)
    monkeypatch.setattr(parallel, "all_gather", lambda value: [value, value, "other"])
    with pytest.raises(ParallelError, match=r"ranks disagree on the masks: rank\(s\) 2 differ from rank 0"):
        parallel.check_equal("the masks", [1, 0, 1])
    with pytest.raises(ParallelError, match="ranks disagree on the weights"):
        parallel.check_equal("the weights", lambda: "digest")
    assert parallel.disagreeing(["a", "a", "b", "a"]) == [2]


def test_metric_shares_add_up_to_the_whole_split():
    rng = np.random.RandomState(0)
    logits, labels = rng.randn(50, 10), rng.randint(0, 10, 50)
    seg_out, seg_labels = rng.randn(6, 3, 4, 4), rng.randint(0, 3, (6, 4, 4))
    for make, out, y in ((lambda: TopK(10), logits, labels), (lambda: SegmentationMetric(3), seg_out, seg_labels),
                         (lambda: BatchMean(lambda o, t: {"m": float(np.mean(t))}, "m"), logits, labels)):
        whole, merged = make(), make()
        whole.update(out, y)
        for part in (slice(0, 3), slice(3, None)):
            share = make()
            share.update(out[part], y[part])
            add_counts(merged, json.loads(json.dumps(counts(share))))
        assert merged.result() == pytest.approx(whole.result())

    class NoCounts:
        def update(self, outputs, labels):
            pass

    with pytest.raises(ConfigError, match="task.metric: NoCounts declares no `additive`"):
        counts(NoCounts())


def test_the_launcher_reports_the_cause_not_the_ranks_that_lost_their_peer(tmp_path, capsys):
    (tmp_path / "launch.log").write_text("LAUNCH ERROR x Container failed !!!\nContainer rank 0 status failed cmd "
                                         "['python'] code 1 log log/workerlog.0\n")
    (tmp_path / "workerlog.0").write_text(f"table\nerror: rank 0 of 2: {parallel.PEER_LOST} during all_gather: x\n"
                                          "  hint: another rank failed\n")
    (tmp_path / "workerlog.1").write_text("error: rank 1 of 2: ValueError: bad\n  hint: rerun with --debug\nnoise\n")
    assert error_lines(tmp_path / "workerlog.1") == ["error: rank 1 of 2: ValueError: bad",
                                                     "  hint: rerun with --debug"]
    assert first_cause({0: error_lines(tmp_path / "workerlog.0"), 1: error_lines(tmp_path / "workerlog.1")}, 0) == 1
    assert failure(tmp_path, 2, 241) == 1
    assert capsys.readouterr().err == "error: rank 1 of 2: ValueError: bad\n  hint: rerun with --debug\n"


def test_bad_nproc_is_exit_2_before_any_work(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path / "go")))
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--nproc", "0"]) == 2
    assert "error: --nproc: 0 processes" in capsys.readouterr().err
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    monkeypatch.setattr("slimkit.run.cli._leave_if_launched", lambda code: None)
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--nproc", "2"]) == 2
    assert "started by paddle.distributed.launch already" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_rank_killed_from_outside_is_named_with_the_signal_not_its_peers_tcp_error(tmp_path, capsys):
    (tmp_path / "launch.log").write_text("Container rank 0 status failed cmd ['python'] code -9 log log/workerlog.0\n")
    (tmp_path / "workerlog.0").write_text("table\n")
    (tmp_path / "workerlog.1").write_text("error: rank 1 of 2: ValueError: (InvalidArgument) TCP connection reset by "
                                          "peer. Details: Success.\n  hint: rerun with --debug\n")
    assert failure(tmp_path, 2, 1) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: rank 0 of 2 was stopped by SIGKILL (signal 9)") and "--resume" in err
    assert "TCP" not in err


def test_a_lost_tcp_store_connection_is_a_lost_peer():
    with pytest.raises(ParallelError, match=parallel.PEER_LOST):
        with parallel._peers("an exchange between ranks"):
            raise ValueError("(InvalidArgument) TCP connection reset by peer. Details: Success.")
    with pytest.raises(ValueError, match="a bug of our own"):
        with parallel._peers("an exchange between ranks"):
            raise ValueError("a bug of our own")
