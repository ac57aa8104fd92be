"""A threaded TCP proxy for fault injection: the project's own test tool.

Put it between a process and a real server (S3, the broker, …) and turn the
server into a hung or a dead one, then back, without touching either side:

    with FaultProxy("127.0.0.1", 5672) as proxy:
        url = proxy.url_for("amqp", userinfo="guest:guest@", path="/")
        proxy.hold()     # a hung remote: connections accepted, bytes read, nothing forwarded
        proxy.hold_after(16384)  # a remote that hangs mid-answer: each connection's first bytes only
        proxy.refuse()   # a dead remote: new connections refused, existing ones reset
        proxy.forward()  # healthy again (what `hold` kept back is delivered now)

Each accepted connection is one daemon thread that pumps both directions
with select(); `close()` (or leaving the `with`) stops every thread.
"""
from __future__ import annotations

import select
import socket
import struct
import threading

FORWARD = "forward"
HOLD = "hold"
HOLD_AFTER = "hold_after"
REFUSE = "refuse"
_TICK = 0.05  # how often pumps look at the mode (seconds)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed remote host does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Pipe:
    """One client connection and its upstream connection (made lazily, so a
    connection accepted during `hold` reaches the server only once forwarded)."""

    def __init__(self, proxy: "FaultProxy", client: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        self.sent_to_client = 0
        self.client_eof = False
        self.upstream_eof = False
        self.closed = False
        self.thread = threading.Thread(target=self._run, name=f"fault-proxy-pipe-{proxy.port}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def reset(self) -> None:
        if self.closed:
            return
        self.closed = True
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    def _run(self) -> None:
        try:
            self._pump()
        except OSError:
            pass
        finally:
            # A pipe reset by `refuse` is already closed; any other end is a close.
            if self.proxy.mode == REFUSE:
                self.reset()
            self._close()
            self.proxy._forget(self)

    def _pump(self) -> None:
        proxy = self.proxy
        while not self.closed and not proxy._stopped.is_set():
            mode = proxy.mode
            if mode == REFUSE:
                self.reset()
                return
            if mode in (FORWARD, HOLD_AFTER) and self.upstream is None:
                try:
                    self.upstream = socket.create_connection(proxy.target, timeout=5)
                    self.upstream.settimeout(None)
                except OSError:
                    self.reset()  # the real server is down: so are we
                    return
            readers = [s for s, eof in ((self.client, self.client_eof), (self.upstream, self.upstream_eof))
                       if s is not None and not eof]
            if not readers:
                return
            readable, _, _ = select.select(readers, [], [], _TICK)
            for sock in readable:
                data = sock.recv(65536)
                if sock is self.client:
                    if data:
                        self.to_upstream += data
                    else:
                        self.client_eof = True
                else:
                    if data:
                        self.to_client += data
                    else:
                        self.upstream_eof = True
            mode = proxy.mode
            if mode == HOLD:
                continue  # hold: keep everything, deliver nothing
            if self.to_upstream and self.upstream is not None:
                self.upstream.sendall(self.to_upstream)
                self.to_upstream.clear()
            if mode == HOLD_AFTER:  # the client gets its first bytes, then nothing
                allowed = max(0, proxy.client_bytes - self.sent_to_client)
                if allowed and self.to_client:
                    part = bytes(self.to_client[:allowed])
                    self.client.sendall(part)
                    del self.to_client[:len(part)]
                    self.sent_to_client += len(part)
                continue
            if self.to_client:
                self.client.sendall(self.to_client)
                self.sent_to_client += len(self.to_client)
                self.to_client.clear()
            # Half-closes travel once everything before them has.
            if self.client_eof and self.upstream is not None and not self.to_upstream:
                if self.upstream_eof:
                    return
                try:
                    self.upstream.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            if self.upstream_eof and not self.to_client:
                if self.client_eof:
                    return
                try:
                    self.client.shutdown(socket.SHUT_WR)
                except OSError:
                    pass


class FaultProxy:
    """A TCP proxy on 127.0.0.1:<free port> to target_host:target_port."""

    def __init__(self, target_host: str, target_port: int, port: int = 0):
        self.target = (target_host, target_port)
        self.mode = FORWARD
        self.client_bytes = 0  # hold_after: how much of its answer each connection gets
        self._lock = threading.Lock()
        self._pipes: set[_Pipe] = set()
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = port
        self._listen()

    # -- the modes ------------------------------------------------------------
    def forward(self) -> "FaultProxy":
        """Healthy: bytes flow both ways (what `hold` kept is sent now)."""
        with self._lock:
            self.mode = FORWARD
            if self._listener is None:
                self._listen()
        return self

    def hold(self) -> "FaultProxy":
        """A hung remote: connections are accepted and read, nothing is forwarded."""
        with self._lock:
            self.mode = HOLD
            if self._listener is None:
                self._listen()
        return self

    def hold_after(self, client_bytes: int) -> "FaultProxy":
        """A remote that hangs mid-answer: requests are forwarded, and each
        connection's client gets its first `client_bytes` bytes, then nothing."""
        with self._lock:
            self.client_bytes = client_bytes
            self.mode = HOLD_AFTER
            if self._listener is None:
                self._listen()
        return self

    def refuse(self) -> "FaultProxy":
        """A dead remote: new connections are refused, existing ones reset."""
        with self._lock:
            self.mode = REFUSE
            self._close_listener()
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.reset()
        return self

    # -- addresses ----------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def url_for(self, scheme: str, userinfo: str = "", path: str = "") -> str:
        """E.g. url_for("amqp", "guest:guest@", "/") or url_for("http")."""
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pipes)

    # -- life cycle -----------------------------------------------------------------
    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self._close_listener()
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe._close()
        for pipe in pipes:
            pipe.thread.join(2)

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]} {self.mode}>"

    # -- internals --------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The same port again after `refuse`, despite connections in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(_TICK)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,),
                                          name=f"fault-proxy-accept-{self.port}", daemon=True)
        self._acceptor.start()

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                # shutdown() stops the listening at once (close() alone waits
                # for the acceptor thread's poll() to let go of the socket,
                # and meanwhile the kernel still completes handshakes).
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._listener.close()
            except OSError:
                pass
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                if listener.fileno() == -1:
                    return
                continue
            except OSError:  # closed by refuse() or close()
                return
            client.settimeout(None)
            pipe = _Pipe(self, client)
            with self._lock:
                if self.mode == REFUSE or self._stopped.is_set():
                    _reset(client)
                    continue
                self._pipes.add(pipe)
            pipe.start()

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)
