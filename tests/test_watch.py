"""`turnq watch`: refuses politely without a terminal; in a real pseudo-terminal it draws the
inspect view, redraws it when another process changes the store, and quits on Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

from test_cli import cli as run_cli
from test_cli import fails


def test_watch_refuses_when_stdout_is_not_a_terminal(store_path):
    run_cli("enqueue", "s", "--text", "x")
    before = store_path.read_bytes()
    fails(run_cli("watch", "s"), 2, "watch needs a terminal")
    fails(run_cli("watch"), 2, "turnq inspect")
    fails(run_cli("watch", "--interval", "0s"), 2, "--interval")
    assert store_path.read_bytes() == before


class Terminal:
    """A child process on a pseudo-terminal of a fixed size, and what it has drawn."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.master = master
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.screen = b""

    def read_until(self, needle: bytes, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.screen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
        return needle in self.screen

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_watch_redraws_on_changes_and_quits_on_ctrl_c(tmp_path):
    store = tmp_path / "q.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TURNQ_")}
    env.update({"TURNQ_STORE": str(store), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    turnq = [sys.executable, "-m", "turnq"]
    subprocess.run([*turnq, "enqueue", "s", "--text", "first-message"], env=env, check=True, capture_output=True)
    subprocess.run([*turnq, "claim", "s", "--owner", "worker-z", "--ttl", "10m"], env=env, check=True,
                   capture_output=True)
    term = Terminal([*turnq, "watch", "s", "--interval", "100ms"], env)
    try:
        assert term.read_until(b"first-message"), term.screen[-2000:]
        assert term.read_until(b"turnq watch")
        assert term.read_until(b"held by worker-z")
        assert term.read_until(b"left)")  # the lease countdown
        subprocess.run([*turnq, "enqueue", "s", "--text", "second-message"], env=env, check=True,
                       capture_output=True)
        assert term.read_until(b"second-message"), term.screen[-2000:]
        term.proc.send_signal(signal.SIGINT)
        status = term.proc.wait(timeout=15)
        term.read_until(b"\x00", timeout=0.5)  # drain what it wrote last
    finally:
        term.close()
    assert status == 130
    assert b"Traceback" not in term.screen
