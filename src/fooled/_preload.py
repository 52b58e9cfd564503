"""Imported once by the forkserver that forks the seed workers (see `study.all_seeds`).

It imports everything a worker runs, then freezes the garbage collector's view of those objects, so the
collector in a forked worker does not touch (and thereby copy) the pages the workers share.
"""

import gc

from . import study  # noqa: F401  (the import is the point)

gc.freeze()
