"""Fate-sharing for a local Ray instance: when the driver dies, its Ray processes die too.

Measured with Ray 2.60: after ``kill -9`` of a driver that started a local instance, Ray's
DashboardAgent and RuntimeEnvAgent outlive it (re-parented to init; their own parent check
tries to report to the dead GCS and never exits). The driver therefore starts this small watcher
beside the instance. It records every descendant process of the driver (pid and start time, so a
reused pid is never hit) once a second, and holds the read end of a pipe whose write end the
driver keeps. When the driver stops Ray normally it closes the pipe and the watcher exits. When
the pipe closes because the driver died, the watcher kills whatever of the recorded processes is
still alive.

Run as ``python -m interplay.runtime.session_reaper DRIVER_PID`` with the pipe as stdin.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

POLL_S = 1.0


def watch(driver_pid: int, poll_s: float = POLL_S) -> int:
    """Record the driver's descendants until stdin closes; kill the survivors if the driver is
    dead then. Returns how many processes were killed."""
    import psutil

    known: dict[int, float] = {}
    while True:
        try:
            for child in psutil.Process(driver_pid).children(recursive=True):
                try:
                    known.setdefault(child.pid, child.create_time())
                except psutil.Error:
                    pass
        except psutil.NoSuchProcess:
            break
        ready, _, _ = select.select([sys.stdin], [], [], poll_s)
        if ready and not sys.stdin.buffer.read1(1):  # EOF: the driver closed the pipe or died
            break
    time.sleep(poll_s / 2)
    try:
        if psutil.Process(driver_pid).status() != psutil.STATUS_ZOMBIE:
            return 0  # a normal stop: the driver closed the pipe and lives on
    except psutil.Error:
        pass
    killed = 0
    for pid, started in known.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started:
                proc.kill()
                killed += 1
        except psutil.Error:
            pass
    return killed


class Reaper:
    """The driver's side: start the watcher, and tell it Ray stopped normally (``close``).

    The watcher detaches (a second fork, its own session): Ray kills a dead driver's child
    processes, and the watcher must outlive the driver to do its work."""

    def __init__(self) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "interplay.runtime.session_reaper", str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        proc.wait()  # the first fork exits at once; the detached watcher holds the pipe
        self.pipe = proc.stdin

    def close(self) -> None:
        """Ray was shut down normally: the watcher exits without killing anything."""
        if self.pipe is not None and not self.pipe.closed:
            self.pipe.close()


if __name__ == "__main__":
    if os.fork() == 0:
        watch(int(sys.argv[1]))
    os._exit(0)
