"""fooled: would a model of p(x, y) notice the inputs that fool a classifier of p(y|x)?"""

__version__ = "0.1.0"

from .api import Run, load_run  # noqa: E402

__all__ = ["Run", "load_run", "__version__"]
