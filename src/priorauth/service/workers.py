"""Several worker processes behind one listening socket, each new connection handed to the least busy worker.

Worker processes that share a listening socket and accept from it themselves (uvicorn's ``--workers``) keep
each keep-alive connection for good, and a burst of connecting clients lands unevenly: one worker may hold 39
of 50 connections and its clients wait three times as long as the other's while a core idles. Here the
supervisor accepts and passes each connection (``SCM_RIGHTS`` over a Unix socket pair) to the worker with the
fewest open connections; the workers serve the app with uvicorn and report each connection that closes.

The supervisor restarts a worker that dies, and on SIGINT or SIGTERM stops accepting, asks the workers to finish
(SIGTERM: uvicorn's graceful shutdown) and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import struct
import time
from dataclasses import dataclass, field

__all__ = ["serve_workers", "supported", "APP"]

APP = "priorauth.service.app:app_from_env"
log = logging.getLogger("priorauth.service.workers")

_READY = b"R"
_CLOSED = b"C"                           # + the worker's count of closed connections, 4 bytes
_CONNECTION = b"c"                       # with one descriptor: a connection to serve
_GRACE_SECONDS = 30.0
_START_WAIT = 60.0                       # seconds to wait for every worker before accepting with those ready


def supported() -> bool:
    """Passing descriptors between processes (Unix sockets with SCM_RIGHTS): not on Windows."""
    return hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "AF_UNIX")


# ---- the worker --------------------------------------------------------------------------------------------------
def _worker_main(channel: socket.socket, host: str, port: int, log_level: str) -> None:
    """A worker process: the app on uvicorn, taking its connections from ``channel``."""
    import uvicorn

    class ChannelServer(uvicorn.Server):
        closed = 0

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=[])          # the app's lifespan; no listening socket of its own
            if self.should_exit:
                return
            base = self.config.http_protocol_class
            server = self

            class Tracked(base):                       # type: ignore[misc, valid-type]
                def connection_lost(self, exc):
                    super().connection_lost(exc)
                    server.closed += 1
                    server._tell(_CLOSED + struct.pack("!I", server.closed % (1 << 32)))

            self._protocol = lambda: Tracked(config=self.config, server_state=self.server_state,
                                             app_state=self.lifespan.state)
            channel.setblocking(False)
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(channel.fileno(), self._take)
            self._tell(_READY)

        def _tell(self, message: bytes) -> None:
            try:
                channel.send(message)
            except OSError:                            # the supervisor is gone: shut down
                self.should_exit = True

        def _take(self) -> None:
            while True:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(channel, 16, 4)
                except BlockingIOError:
                    return
                except OSError:
                    data, fds = b"", []
                if not data and not fds:               # the supervisor closed its end
                    self._loop.remove_reader(channel.fileno())
                    self.should_exit = True
                    return
                for fd in fds:
                    conn = socket.socket(fileno=fd)
                    conn.setblocking(False)
                    self._loop.create_task(self._loop.connect_accepted_socket(self._protocol, conn))

        async def shutdown(self, sockets=None) -> None:
            try:
                self._loop.remove_reader(channel.fileno())
            except (AttributeError, ValueError, OSError):
                pass
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(APP, factory=True, host=host, port=port, log_level=log_level, access_log=False)
    ChannelServer(config).run(sockets=[])


# ---- the supervisor ----------------------------------------------------------------------------------------------
@dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    end: socket.socket
    ready: bool = False
    sent: int = 0
    closed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def open(self) -> int:
        return self.sent - self.closed


class _Supervisor:
    def __init__(self, host: str, port: int, workers: int, log_level: str):
        self.host, self.port, self.count, self.log_level = host, port, workers, log_level
        self.ctx = multiprocessing.get_context("spawn")
        self.sel = selectors.DefaultSelector()
        self.workers: list[_Worker | None] = [None] * workers
        self.stopping = False
        self.turn = 0
        self.listener: socket.socket | None = None
        self.accepting = False
        self.began = time.monotonic()

    # workers
    def spawn(self, index: int) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = self.ctx.Process(target=_worker_main, args=(theirs, self.host, self.port, self.log_level),
                                   name=f"priorauth-worker-{index}", daemon=False)
        process.start()
        theirs.close()
        mine.setblocking(False)
        w = _Worker(index, process, mine)
        self.workers[index] = w
        self.sel.register(mine, selectors.EVENT_READ, w)

    def retire(self, w: _Worker) -> None:
        self.sel.unregister(w.end)
        w.end.close()
        self.workers[w.index] = None
        w.process.join(timeout=5)

    def hear(self, w: _Worker) -> None:
        while True:
            try:
                msg = w.end.recv(16)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:                               # the worker exited
                code = w.process.exitcode if not w.process.is_alive() else None
                self.retire(w)
                if not self.stopping:
                    log.warning("worker %d (pid %s) exited (code %s); starting another", w.index, w.process.pid,
                                code)
                    time.sleep(0.5 if time.monotonic() - w.started < 5 else 0)   # no tight restart loop
                    self.spawn(w.index)
                return
            if msg[:1] == _READY:
                w.ready = True
                self.maybe_accept()
            elif msg[:1] == _CLOSED and len(msg) == 5:
                closed = struct.unpack("!I", msg[1:])[0]
                w.closed += (closed - w.closed) % (1 << 32)

    def maybe_accept(self) -> None:
        """Start accepting once every worker is ready (connections opened meanwhile wait in the listen queue, so
        the first burst is not all handed to the first worker up), or after ``_START_WAIT`` with one ready."""
        if self.accepting or self.listener is None or self.stopping:
            return
        ready = [w for w in self.workers if w is not None and w.ready]
        if len(ready) == self.count or (ready and time.monotonic() - self.began > _START_WAIT):
            self.sel.register(self.listener, selectors.EVENT_READ, None)
            self.accepting = True

    # connections
    def choose(self) -> list[_Worker]:
        """Ready workers, the fewest open connections first (ties in turn)."""
        ready = [w for w in self.workers if w is not None and w.ready]
        self.turn += 1
        return sorted(ready, key=lambda w: (w.open, (w.index - self.turn) % self.count))

    def accept(self) -> None:
        for _ in range(64):
            try:
                conn, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:                    # such as too many open files: the client retries
                log.warning("accept failed: %s", type(exc).__name__)
                return
            with conn:
                for w in self.choose():
                    try:
                        socket.send_fds(w.end, [_CONNECTION], [conn.fileno()])
                    except (BlockingIOError, OSError):
                        continue
                    w.sent += 1
                    break
                # else: no worker could take it; closing it lets the client try again

    def stop(self, *_args) -> None:
        self.stopping = True

    def run(self) -> None:
        self.listener = socket.create_server((self.host, self.port), backlog=2048)
        self.listener.setblocking(False)
        for i in range(self.count):
            self.spawn(i)
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        log.info("priorauth: %d workers on http://%s:%d; each connection goes to the least busy", self.count,
                 self.host, self.port)
        try:
            while not self.stopping:
                self.maybe_accept()
                for key, _events in self.sel.select(timeout=0.5):
                    if key.data is None:
                        self.accept()
                    else:
                        self.hear(key.data)
                    if self.stopping:
                        break
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def shutdown(self) -> None:
        self.stopping = True
        if self.listener is not None:
            if self.accepting:
                self.sel.unregister(self.listener)
            self.listener.close()
        live = [w for w in self.workers if w is not None]
        for w in live:
            if w.process.is_alive():
                os.kill(w.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _GRACE_SECONDS
        for w in live:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.end.close()


def serve_workers(host: str, port: int, workers: int, log_level: str = "info") -> None:
    """Run ``workers`` worker processes behind one listening socket (see the module's text)."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(levelname)s:     %(message)s")
    _Supervisor(host, port, workers, log_level).run()
