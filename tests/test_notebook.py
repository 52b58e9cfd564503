"""The walkthrough notebook runs from top to bottom on a finished quick study."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "walkthrough.ipynb"


@pytest.mark.slow
def test_walkthrough_notebook_runs_without_error(quick_run, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    import fooled

    out, _ = quick_run  # the notebook reuses the session's quick study instead of running its own
    monkeypatch.setenv("FOOLED_RUN", str(out))
    monkeypatch.setenv("PYTHONPATH", str(Path(fooled.__file__).resolve().parents[1]))  # the kernel imports this package
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "commit the notebook with outputs cleared"
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the three digits were drawn
