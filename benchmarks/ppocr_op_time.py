"""Where a PP-OCR recogniser's time goes in Paddle Inference, float and int8: time per op type.

The original program (float), slimkit's float export of the imported model and its int8
export (PTQ, hist calibration, the CTC head and the neck's 1x3 convs kept float:
ppocr.kept_float, as in benchmarks/ppocr_compress.py) each run 50 times (or the
second argument) on one 48x320 line in the oneDNN predictor (1 thread) with Paddle Inference's
profiler on (`config.enable_profile()`), each in its own process; the profiler's table is
summed by op type. The profiler's own cost per op inflates every total, more for a
program with more ops: compare shares within a column and the two slimkit exports (one
executor, the same ops) with each other, not totals with the original. Which ops int8
speeds up, and which it leaves as they were, is what decides how much faster an int8
recogniser can get in this predictor.

    PYTHONPATH=. OMP_NUM_THREADS=1 python3 benchmarks/ppocr_op_time.py [PP-OCRv5_mobile_rec [RUNS]]
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppocr  # noqa: E402

SHAPE = [1, 3, ppocr.HEIGHT, ppocr.WIDTH]
ROW = re.compile(r"^\s*(?:thread\d+::)?([A-Za-z_0-9./]+)\s+(\d+)\s+([\d.]+)\s+")


def profile(program, params, runs):
    """Run the predictor `runs` times with the profiler on (this process); the profiler prints its table on exit."""
    import paddle.inference as pi

    config = pi.Config(program, params)
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(1)
    config.enable_mkldnn()
    config.enable_mkldnn_int8()
    config.enable_profile()
    predictor = pi.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    x = np.random.RandomState(0).rand(*SHAPE).astype("float32")
    for _ in range(runs):
        handle.copy_from_cpu(x)
        predictor.run()


def op_times(text):
    """{op type: total ms} from the profiler's table (rows: name, calls, total ms, ...)."""
    out = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            name = m.group(1).split("/")[-1]
            out[name] = out.get(name, 0.0) + float(m.group(3))
    return out


def child(program, params, runs):
    # In a scratch folder: the profiler also writes a profile.log into the working directory.
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(Path(program).resolve()),
                               str(Path(params).resolve()), str(runs)], capture_output=True, text=True, cwd=cwd)
    return done.stdout + done.stderr


def main(name="PP-OCRv5_mobile_rec", runs="50"):
    runs = int(runs)
    import slimkit
    from slimkit.deploy.paddle_inference import export_float, program_file
    from slimkit.quant import calibrate, convert, export_quantized, prepare_ptq

    folder = ppocr.fetch()[name]
    model = slimkit.from_inference(folder)
    _, calibration, _ = ppocr.lines_for(folder, 96, seed=1)
    program = next(p for p in (Path(folder) / "inference.json", Path(folder) / "inference.pdmodel") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        observed = prepare_ptq(model, algo="hist", input_shape=SHAPE, skip_layers=ppocr.kept_float(model))
        calibrate(observed, list(ppocr.batches(calibration, 16)))
        prefix = export_quantized(convert(observed), Path(tmp) / "int8", input_shape=SHAPE)
        float_prefix = export_float(model, Path(tmp) / "float", SHAPE)
        texts = {"float original": child(str(program), str(Path(folder) / "inference.pdiparams"), runs),
                 "float export": child(str(program_file(float_prefix)), f"{float_prefix}.pdiparams", runs),
                 "int8 export": child(str(program_file(prefix)), f"{prefix}.pdiparams", runs)}
    tables = {k: op_times(v) for k, v in texts.items()}
    if not all(tables.values()):
        print("the profiler printed no table; its output was:")
        for k, v in texts.items():
            print(f"--- {k}\n{v[-3000:]}")
        return
    ops = sorted(set().union(*tables.values()), key=lambda o: -max(t.get(o, 0.0) for t in tables.values()))
    print(f"{name}: ms per run by op type, oneDNN, 1 thread, {runs} runs, CPU {cpu()}")
    print(f"{'op':36s} " + " ".join(f"{k:>16s}" for k in tables))
    for op in ops[:25]:
        print(f"{op:36s} " + " ".join(f"{t.get(op, 0.0) / runs:16.3f}" for t in tables.values()))
    print(f"{'total':36s} " + " ".join(f"{sum(t.values()) / runs:16.3f}" for t in tables.values()))


def cpu():
    from slimkit.core.cpu import cpu_description

    return cpu_description()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        profile(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main(*sys.argv[1:])
