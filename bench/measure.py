"""Run one benchmark step as a child process and measure it.

Wall time, user+sys CPU and peak RSS are the child's own rusage (wait4), so nothing the harness
itself does (copies, compares, JSON) is counted. The child is started through GNU time, which
forks it from a 1 MB process and reports its wait4 rusage: a child spawned straight from Python
inherits the harness's RSS high-water mark (vfork + exec keeps the old mm's peak in ru_maxrss,
measured: `true` reports 319 MB when the parent holds 300 MB), which would inflate small tools.
The page cache is dropped before each step so every tool reads its source and repository from
disk, as a nightly job would.

ru_maxrss is one process's peak: a tool that works in several processes (the agent's restore
forks workers) would be measured by its largest one only. So the harness also samples the
proportional set size (PSS: each shared page divided among the processes sharing it) summed over
the step's whole process tree every `SAMPLE_S`, and the peak memory it reports is the larger of
the two, for every tool alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else shutil.which("time")
SAMPLE_S = 0.05  # between samples of the process tree's PSS


@dataclass
class StepResult:
    cmd: list[str]
    rc: int
    wall_s: float
    user_s: float
    sys_s: float
    cpu_s: float
    peak_rss_kib: int  # peak memory, KiB: the larger of ru_maxrss and the peak of tree_pss_kib
    cache_dropped: bool
    rusage_via: str  # "time": GNU time's report of the child; "wait4": direct (RSS may include the harness)
    stdout: str  # path of the captured output
    stderr: str
    maxrss_kib: int = 0  # ru_maxrss: the largest single process's peak RSS
    tree_pss_kib: int = 0  # peak PSS summed over the process tree, sampled every SAMPLE_S

    def as_dict(self) -> dict:
        return asdict(self)


def fresh_work(work: Path) -> Path:
    """An empty work directory holding only the benchmark passphrase file (mode 0600); its path."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pw = work / "pw"
    pw.write_text("bench passphrase\n")
    pw.chmod(0o600)
    return pw


def drop_caches() -> bool:
    """sync, then drop page cache, dentries and inodes; False when not permitted (not root)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run_step(cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
             log_prefix: str | Path, drop: bool = True, stdout_devnull: bool = False) -> StepResult:
    """Run cmd to completion; stdout/stderr go to LOG_PREFIX.out/.err (never a pipe: no deadlock,
    and the tools see no terminal, so none draws progress bars)."""
    dropped = drop_caches() if drop else False
    out_path, err_path = Path(f"{log_prefix}.out"), Path(f"{log_prefix}.err")
    ru_path = Path(f"{log_prefix}.rusage")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(c) for c in cmd]
    launcher = [GNU_TIME, "-o", str(ru_path), "-f", "%U %S %M"] if GNU_TIME else []
    with open(err_path, "wb") as err, open(os.devnull if stdout_devnull else out_path, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(launcher + cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        sampler = TreeMemory(proc.pid)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        pss = sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen consistent
    user, sys_, rss = ru.ru_utime, ru.ru_stime, ru.ru_maxrss
    if GNU_TIME:  # its last line is ours; a failing command adds "Command exited with ..." before it
        try:
            user, sys_, rss = ru_path.read_text().split("\n")[-2].split()
            user, sys_, rss = float(user), float(sys_), int(rss)
        except (OSError, ValueError, IndexError):
            pass
    return StepResult(cmd=cmd, rc=proc.returncode, wall_s=round(wall, 3), user_s=round(user, 3),
                      sys_s=round(sys_, 3), cpu_s=round(user + sys_, 3), peak_rss_kib=max(rss, pss),
                      cache_dropped=dropped, rusage_via="time" if GNU_TIME else "wait4",
                      stdout="" if stdout_devnull else str(out_path), stderr=str(err_path),
                      maxrss_kib=rss, tree_pss_kib=pss)


class TreeMemory:
    """Samples the summed PSS of a process and its descendants on a thread until `stop`."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """The peak, KiB."""
        self._stop.set()
        self._thread.join()
        return self._peak

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, sum(_pss(p) for p in process_tree(self._pid)))
            self._stop.wait(SAMPLE_S)


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (those alive now), from /proc."""
    out = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{t}/children").read_text().split()
        except OSError:
            continue
        for c in children:
            out += process_tree(int(c))
    return out


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_size(path: str | Path) -> tuple[int, int]:
    """(bytes, files) like `du -sb`: apparent sizes of every file and directory, links not followed."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        total += os.lstat(root).st_size
        for n in names:
            total += os.lstat(os.path.join(root, n)).st_size
            files += 1
    return total, files


def allocated(path: str | Path) -> int:
    """Bytes actually allocated on disk (st_blocks are 512-byte units whatever the fs block size)."""
    return os.stat(path).st_blocks * 512
