"""Execute every demo notebook as Jupyter would (working folder demos/) and save it with its outputs.

    python demos/regenerate.py            # all notebooks
    python demos/regenerate.py 02         # those whose name starts with 02

The notebooks are committed with their outputs (tables and plots) so a reader on a code
host sees the results without running them. Their files go to demos/runs/, which git
ignores. Run it on an otherwise idle machine: the tables hold measured latencies.
"""

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

DEMOS = Path(__file__).resolve().parent
ROOT = DEMOS.parent


def regenerate(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(DEMOS)}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # run timestamps: noise in every diff
    nbformat.write(nb, path)
    return path.stat().st_size


def main(prefixes):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for path in sorted(DEMOS.glob("*.ipynb")):
        if not prefixes or any(path.name.startswith(p) for p in prefixes):
            print(f"{path.name}: {regenerate(path) // 1024} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
