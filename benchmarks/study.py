"""Time the default study cold and then cached, and its peak memory.

    python benchmarks/study.py [--quick] [-- extra `fooled study` arguments]

Runs `fooled study` into a fresh temporary folder (cold: trains and attacks everything), then the same
command again (cached: every stage loads from the run directory), and prints both wall times and the peak
memory of the whole process tree (the study, the forkserver and the seed workers together), sampled every second
(reading the smaps of processes that map torch's libraries costs CPU that the study, on two cores, would use):
the sum of proportional set sizes (PSS: a page shared by n processes counts 1/n in each), and for reference the
sum of resident set sizes, which counts the shared libraries and the modules the workers inherit once per process.
The last line is `ratio: R`, cold time divided by cached time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _tree(root: int) -> set[int]:
    """`root` and all its descendants, from /proc (Linux)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(kids)
        frontier += kids
    return tree


def _memory_kib(pids: set[int]) -> tuple[int, int]:
    """(sum of PSS, sum of RSS) of the processes, KiB. PSS divides each shared page among the processes that map
    it (the libraries and the forkserver's imported modules), so its sum is the memory the tree really holds;
    the RSS sum counts a shared page once per process."""
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


def run(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds and peak tree PSS and RSS (KiB) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            pss, rss = _memory_kib(_tree(proc.pid))
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
            time.sleep(1.0)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    t.join()
    if proc.returncode != 0:
        sys.exit(f"study failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - start, peak[0], peak[1]


def main() -> None:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    quick = ["--quick"] if "--quick" in args else []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fooled.cli", "study", "--out", os.path.join(tmp, "run"), "--quiet", *quick, *extra]
        cold, cold_pss, cold_rss = run(cmd)
        cached, cached_pss, cached_rss = run(cmd)
    for label, secs, pss, rss in (("cold", cold, cold_pss, cold_rss), ("cached", cached, cached_pss, cached_rss)):
        print(f"{label + ':':<8}{secs:7.1f} s, peak memory {pss / 1024:6.0f} MiB (process tree, PSS; RSS summed over processes: {rss / 1024:.0f} MiB)")
    print(f"cpus: {os.cpu_count()}")
    print(f"ratio: {cold / cached:.1f}")


if __name__ == "__main__":
    main()
