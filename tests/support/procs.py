"""Stopping the server processes tests start (anvil, witnesses): by their own pid, politely first."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """Stop proc by its pid: SIGTERM (a server saves its state and closes cleanly), then SIGKILL
    if it has not exited within timeout_s. Returns once it has exited; None or an exited
    process is left as it is."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
