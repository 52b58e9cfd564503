"""Time the default study cold and then cached, and its peak memory.

    python benchmarks/study.py [--quick] [-- extra `fooled study` arguments]

Runs `fooled study` into a fresh temporary folder (cold: trains and attacks everything), then the same
command again (cached: every stage loads from the run directory), and prints both wall times and the peak
resident memory of the whole process tree (the study and its worker processes together), sampled every 50 ms.
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


def _tree_rss_kib(root: int) -> int:
    """Resident memory of `root` and all its descendants, from /proc (Linux)."""
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
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak tree RSS (KiB) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    t.join()
    if proc.returncode != 0:
        sys.exit(f"study failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - start, peak[0]


def main() -> None:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    quick = ["--quick"] if "--quick" in args else []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fooled.cli", "study", "--out", os.path.join(tmp, "run"), "--quiet", *quick, *extra]
        cold, cold_peak = run(cmd)
        cached, cached_peak = run(cmd)
    print(f"cold:   {cold:7.1f} s, peak memory {cold_peak / 1024:7.0f} MiB (process tree)")
    print(f"cached: {cached:7.1f} s, peak memory {cached_peak / 1024:7.0f} MiB (process tree)")
    print(f"cpus: {os.cpu_count()}")
    print(f"ratio: {cold / cached:.1f}")


if __name__ == "__main__":
    main()
