"""The demo notebooks execute top to bottom without a cell error, write only under runs/, and are
committed with their (small) outputs; `python demos/regenerate.py` refreshes those."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "demos").glob("*.ipynb"))


def test_every_demo_is_here():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), \
        "commit notebooks with their outputs: run python demos/regenerate.py"
    assert path.stat().st_size < 400 * 1024, "keep the committed outputs small (smaller figures, fewer prints)"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    plots = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
             if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert plots, "each demo shows at least one plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"], "a demo writes its files under runs/ only"
