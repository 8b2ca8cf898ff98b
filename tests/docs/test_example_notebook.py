"""The example notebook runs from top to bottom (kikuchipy's bundled Ni map: no download)."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "examples" / "separate_in_kikuchipy.ipynb"


@pytest.mark.slow
def test_the_example_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored clean
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: cell.outputs for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) for cells in outputs.values() for o in cells)
    assert "(3, 3, 2)" in shown and "<EBSD, title: patterns Scan 1 A, dimensions: (3, 3|60, 60)>" in shown
    last = outputs[max(outputs)]
    assert any("image/png" in o.get("data", {}) for o in last)  # the three maps were drawn
