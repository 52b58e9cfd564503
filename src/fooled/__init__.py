"""fooled: would a model of p(x, y) notice the inputs that fool a classifier of p(y|x)?"""

from ._version import __version__
from .api import Run, load_run

__all__ = ["Run", "load_run", "__version__"]
