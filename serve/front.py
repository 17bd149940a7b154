"""The app as `zoo serve` runs it: a front that reads each request's whole body on granian's event loop, then
hands the complete request to the Flask (WSGI) app. It speaks RSGI, granian's own interface (`zoo serve`: some 55 us,
a tenth, less of a worker's CPU per v2 request than ASGI's message dicts), and ASGI for any other server and the
tests; both are thin adapters over one `respond`.

- **Slow clients cost a buffer, not a thread.** Under plain WSGI a client that sends its headers and then trickles
  its body holds a worker thread for as long as it likes. Here a thread is taken only once the request is
  complete, and a body that has not arrived within BODY_TIMEOUT seconds is answered 408 and its connection closed.
  A body whose Content-Length is over the limit is refused (413) unread; one without (chunked) is refused once
  its first limit + 1 bytes have come, and its connection closed.
- **One queue per worker, bounded.** Complete requests wait in the worker's queue and run in turn: on the event
  loop itself with one request thread (the default), else on a pool. Past MAX_QUEUE waiting requests a new one is
  refused at once with 503 and Retry-After, as Triton's queue policy does, so that overload sheds load instead of
  growing every request's wait.
- **Long requests leave the loop.** A large picture (or any body over 64 KiB) runs on a thread of its own, so that
  the loop goes on answering the rest meanwhile; liveness is answered ahead of any queue.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import io
import logging
import re
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask

from zoo.serve import create_app
from zoo.serve.context import MODELS_KEY
from zoo.serve.metrics import record_refusal
from zoo.serve.statistics import ARRIVED
from zoo.serve.v2 import DirectInfer

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Started = tuple[int, list[tuple[str, str]], list[bytes]]
Answer = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body
# The whole body, or its first limit + 1 bytes (enough to know it is over the limit), given the limit and the length
# the request declared (None: chunked, or not a plain number); _Gone if the client went away meanwhile.
ReadBody = Callable[[int, "int | None"], Awaitable[bytes]]

LIVENESS = ("/healthz", "/v2/health/live")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_PNG = b"\x89PNG\r\n\x1a\n"
LONG_BODY = 64 * 1024  # bytes: a body this large takes milliseconds to parse
LONG_PICTURE = 1024 * 1024  # pixels: a PNG this large takes tens of milliseconds to decode
log = logging.getLogger("zoo.serve")


@dataclass(frozen=True, slots=True)
class FrontRequest:
    """What the front needs of a request, whichever interface (RSGI or ASGI) brought it."""

    method: str
    path: str  # percent-decoded, without the query string
    query_string: str
    headers: list[tuple[str, str]]  # (name, value) as latin-1 text, in order, repeats kept
    client: tuple[str, int]
    server: tuple[str, int]
    scheme: str = "http"
    http_version: str = "1.1"
    root_path: str = ""


class _Gone(Exception):
    """The client closed its connection before its body had come: there is no one to answer."""


def _address(text: str) -> tuple[str, int]:
    """RSGI's "host:port" (an IPv6 host in brackets or not) as ASGI's (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def runs_long(environ: dict[str, Any], body: bytes) -> bool:
    """Whether a request may take long enough to hold up the loop: a large body, a multipart upload or a large PNG
    (read from its header; a JPEG is decoded at a reduced scale, so even a large one is quick)."""
    if len(body) > LONG_BODY or environ.get("CONTENT_TYPE", "").startswith("multipart/"):
        return True
    if body[:8] == _PNG and len(body) >= 24:
        width, height = struct.unpack(">II", body[16:24])
        return width * height > LONG_PICTURE
    return False


async def _within(seconds: float | None, awaitable: Awaitable[bytes]) -> bytes:
    """`await awaitable`, or TimeoutError after `seconds`: asyncio.timeout where there is one (a timer on the running
    task; wait_for would start a task for every request)."""
    if not hasattr(asyncio, "timeout"):  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with asyncio.timeout(seconds):
        return await awaitable


class BufferedWSGI:
    """An ASGI application running a WSGI app, each request's body read in full first, in a bounded queue."""

    def __init__(self, app: Flask, threads: int) -> None:
        self.app = app
        self.limit = app.config["MAX_CONTENT_LENGTH"]
        self.body_timeout = float(app.config["BODY_TIMEOUT"])
        self.max_queue = int(app.config["MAX_QUEUE"])  # 0: no bound
        # /v2 infer answered without Flask's request machinery, when the app is the zoo's (not another WSGI app)
        self.direct = DirectInfer(app) if MODELS_KEY in app.extensions else None
        # One request thread is the event loop itself: a hand-off to a pool of one would only add a wake-up and
        # two GIL switches to every request, while the loop could do nothing else with the GIL meanwhile.
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="zoo-request") if threads > 1 else None
        self.long_pool = ThreadPoolExecutor(1, thread_name_prefix="zoo-long-request")
        self.queued = 0  # complete requests admitted and not yet answered
        self._inline: collections.deque[tuple[Callable[[], Started], asyncio.Future[Started]]] = collections.deque()
        self._runner: asyncio.Task[None] | None = None
        self.grpc: Any = None  # the worker's GrpcFront, once the lifespan has started it

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        """granian's RSGI: one HTTP request (`zoo serve` runs granian with websockets off)."""
        if scope.proto != "http":
            return
        request = FrontRequest(scope.method, scope.path, scope.query_string, scope.headers.items(),
                               _address(scope.client), _address(scope.server), scope.scheme, scope.http_version)
        answer = await self.respond(request, functools.partial(self._rsgi_body, protocol))
        if answer is not None:
            protocol.response_bytes(*answer)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """granian's RSGI start-up, before the worker's loop serves: the gRPC front on that loop."""
        try:
            loop.run_until_complete(self._start_grpc())
        except Exception as error:  # noqa: BLE001 (the worker reports it in one line and exits)
            log.error("gRPC: %s", error)
            raise SystemExit(1) from None

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self._stop())

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """ASGI: lifespan and HTTP requests."""
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        request = FrontRequest(
            scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]],
            tuple(scope.get("client") or ("", 0)), tuple(scope.get("server") or ("127.0.0.1", 80)),
            scope.get("scheme", "http"), scope.get("http_version", "1.1"), scope.get("root_path", ""))
        answer = await self.respond(request, functools.partial(self._asgi_body, receive))
        if answer is None:
            return
        status, headers, body = answer
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
        await send({"type": "http.response.body", "body": body})

    async def respond(self, request: FrontRequest, read_body: ReadBody) -> Answer | None:
        """The answer to one request (None: its client left before its body came), whichever interface asks."""
        if request.method == "GET" and request.path in LIVENESS:
            return _answer(200, {"live": True})
        if self._full():
            # Refused before its body is read, and its connection closed (the unread body would otherwise have to
            # be drained): a client that hammers must reconnect, which frees the worker for the requests it took.
            return self._refusal(close=True)
        declared = next((value for name, value in request.headers if name.lower() == "content-length"), None)
        length = int(declared) if declared and _CONTENT_LENGTH.fullmatch(declared) else None
        body = b""
        # Over the limit by its header: Flask answers 413 from the header alone, so nothing is read. A body still
        # arriving is the client's time, bounded by the body timeout; it joins the queue once complete.
        over = length is not None and length > self.limit
        if not over:
            try:
                body = await _within(self.body_timeout or None, read_body(self.limit, length))
            except asyncio.TimeoutError:
                record_refusal(408)
                return _answer(408, {"error": f"Request Timeout: expected the whole body within "
                                              f"{self.body_timeout:g} s, got part of it"}, close=True)
            except _Gone:
                return None
        if len(body) > self.limit:
            # Came without a Content-Length to refuse it by (chunked): only the first limit + 1 bytes were read, which
            # Flask would take for the whole body (and call cut JSON invalid); the rest is left unread, so the
            # connection closes.
            record_refusal(413)
            return _answer(413, {"error": f"Request Entity Too Large: expected a body of at most {self.limit} "
                                          f"bytes, got more"}, close=True)
        if self._full():
            return self._refusal(close=False)
        call: Callable[[], Started]
        route = (None if over or self.direct is None
                 else self.direct.match(request.method, request.path, request.headers))
        if route is not None and self.direct is not None:
            call = functools.partial(self.direct, route, request.path, request.headers, body, time.perf_counter(),
                                     request.client[0])
            long = len(body) > LONG_BODY
        else:
            environ = self._environ(request, body)
            call, long = functools.partial(self._call, environ), runs_long(environ, body)
        self.queued += 1
        try:
            if long or self.pool is not None or self._inline or not (self._runner is None or self._runner.done()):
                status, headers, chunks = await self._run(call, long)
            else:  # nothing waits ahead of it on the loop: answered now, without a future and a task to hand it over
                status, headers, chunks = call()
        finally:
            self.queued -= 1
        return status, headers, b"".join(chunks)

    def _full(self) -> bool:
        return bool(self.max_queue) and self.queued >= self.max_queue

    def _refusal(self, close: bool) -> Answer:
        record_refusal(503)
        return _answer(503, {"error": f"Service Unavailable: this worker has {self.queued} requests waiting, its "
                                      f"limit; retry after a second"}, close=close, extra=[("retry-after", "1")])

    def _run(self, call: Callable[[], Started], long: bool) -> Awaitable[Started]:
        loop = asyncio.get_running_loop()
        if long:
            return loop.run_in_executor(self.long_pool, call)
        if self.pool is not None:
            return loop.run_in_executor(self.pool, call)
        future: asyncio.Future[Started] = loop.create_future()
        self._inline.append((call, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run_inline())
        return future

    async def _run_inline(self) -> None:
        """Run the queued requests on the loop, all that are queued, then yield so that arrivals join (or are
        refused)."""
        while self._inline:
            for _ in range(len(self._inline)):
                call, future = self._inline.popleft()
                try:
                    future.set_result(call())
                except BaseException as error:  # noqa: BLE001 (the request's own coroutine raises it)
                    future.set_exception(error)
            await asyncio.sleep(0)

    @staticmethod
    async def _asgi_body(receive: Receive, limit: int, declared: int | None) -> bytes:
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if not message.get("more_body") or size > limit:
                return b"".join(parts)

    @staticmethod
    async def _rsgi_body(protocol: Any, limit: int, declared: int | None) -> bytes:
        try:
            if declared is not None:  # at most `declared` bytes (no more than the limit): the HTTP parser frames it
                return bytes(await protocol())
            parts, size = [], 0
            async for chunk in protocol:
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
            return b"".join(parts)
        except RuntimeError as error:  # granian's RSGIProtocolClosed and RSGIProtocolError: the client left
            raise _Gone from error

    @staticmethod
    def _environ(request: FrontRequest, body: bytes) -> dict[str, Any]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": request.root_path,
            "PATH_INFO": request.path.encode("utf-8").decode("latin-1"),
            "QUERY_STRING": request.query_string,
            "SERVER_NAME": str(request.server[0]),
            "SERVER_PORT": str(request.server[1]),
            "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
            "REMOTE_ADDR": request.client[0],
            "REMOTE_PORT": str(request.client[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": request.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            ARRIVED: time.perf_counter(),
        }
        for name, value in request.headers:
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                key = f"HTTP_{key}"
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _call(self, environ: dict[str, Any]) -> Started:
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            started[:] = [int(status.split(" ", 1)[0]), headers]
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            chunks = list(result)
        finally:
            getattr(result, "close", lambda: None)()
        return started[0], started[1], chunks

    async def _start_grpc(self) -> None:
        """Serve gRPC from this worker too when GRPC_PORT is set (serve/grpc_front.py), on this event loop."""
        port = int(self.app.config.get("GRPC_PORT") or 0)
        if not port:
            return
        from zoo.serve.grpc_front import GrpcFront

        self.grpc = GrpcFront(self.app, self)
        await self.grpc.start(str(self.app.config.get("GRPC_HOST") or "127.0.0.1"), port)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start_grpc()
                except Exception as error:  # noqa: BLE001 (the worker reports it and exits)
                    await send({"type": "lifespan.startup.failed", "message": f"gRPC: {error}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop()
        for pool in (self.pool, self.long_pool):
            if pool is not None:
                pool.shutdown(wait=False)


def _answer(status: int, document: dict[str, Any], close: bool = False,
            extra: list[tuple[str, str]] | None = None) -> Answer:
    """A JSON answer from the front itself, without the app (liveness, 408, 413, 503)."""
    body = orjson.dumps(document)
    headers = [("content-type", "application/json"), ("content-length", str(len(body))),
               ("x-content-type-options", "nosniff"), *(extra or [])]
    if close:
        headers.append(("connection", "close"))
    return status, headers, body


def create_front(threads: int | None = None) -> BufferedWSGI:
    """`create_app()` (settings from ZOO_SERVE_*) behind the buffering front, with ZOO_SERVE_THREADS threads: what
    each of `zoo serve`'s granian workers runs (granian calls it with no arguments)."""
    app = create_app()
    # torch and onnxruntime leave ~200k long-lived objects that a full collection would walk (50 ms here) in
    # the middle of some request; frozen, they are never scanned again.
    gc.collect()
    gc.freeze()
    return BufferedWSGI(app, threads or int(app.config["THREADS"]))
