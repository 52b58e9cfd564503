import subprocess
import sys

import pytest
import torch

from fooled.config import TrainConfig
from fooled.data import load
from fooled.models.flow import FlowClassifier, FlowConfig
from fooled.train import fit

torch.set_num_threads(1)  # many small ops: one thread is as fast here and keeps parallel test runs from thrashing


def pytest_collection_modifyitems(items):
    """Every test that runs a whole study (through `quick_run` or its own) is `slow`: `pytest -m "not slow"` skips them."""
    for item in items:
        if "quick_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def digits():
    """The digits splits of seed 0."""
    return load("digits", seed=0)


@pytest.fixture(scope="session")
def flow(digits):
    """A small flow trained on digits for a few epochs (~7 s on one core), shared by the detector and OOD tests."""
    model = FlowClassifier((1, 8, 8), 10, 17, FlowConfig(blocks=2, hidden=32))
    fit(model, digits.train, digits.val, TrainConfig(epochs=5), seed=0)
    return model


@pytest.fixture
def cli_error(capsys):
    """`cli_error(*argv)` runs `fooled ARGV` in-process, checks it is a user error (exit 2, one stderr line, no
    traceback) and returns that line."""
    from fooled.cli import main

    def run(*argv) -> str:
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return err

    return run
