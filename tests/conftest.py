import subprocess
import sys

import pytest
import torch

torch.set_num_threads(1)  # many small ops: one thread is as fast here and keeps parallel test runs from thrashing


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """One `fooled study --quick --no-figures` through the real command line, shared by the end-to-end tests.

    Figures and report are drawn from it by `fooled figures` and `fooled report` in test_cli.py.
    """
    out = tmp_path_factory.mktemp("quick") / "run"
    proc = subprocess.run([sys.executable, "-m", "fooled.cli", "study", "--quick", "--out", str(out), "--quiet", "--no-figures"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc
