"""Imported once by the forkserver that forks the seed workers (see `study.run.all_seeds`).

It imports everything a worker runs, then freezes the garbage collector's view of those objects, so the
collector in a forked worker does not touch (and thereby copy) the pages the workers share.
"""

import gc

from . import run  # noqa: F401  (the import is the point)

gc.freeze()
