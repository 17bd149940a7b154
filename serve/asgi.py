"""The app as `zoo serve` runs it: an ASGI front that reads each request's whole body on granian's event loop,
then hands the complete request to the Flask (WSGI) app.

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
import re
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
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

LIVENESS = ("/healthz", "/v2/health/live")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_PNG = b"\x89PNG\r\n\x1a\n"
LONG_BODY = 64 * 1024  # bytes: a body this large takes milliseconds to parse
LONG_PICTURE = 1024 * 1024  # pixels: a PNG this large takes tens of milliseconds to decode


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

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] in LIVENESS:
            return await self._answer(send, 200, {"live": True})
        if self._full():
            # Refused before its body is read, and its connection closed (the unread body would otherwise have to
            # be drained): a client that hammers must reconnect, which frees the worker for the requests it took.
            return await self._refuse(send, close=True)
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        declared = next((value for name, value in headers if name.lower() == "content-length"), None)
        body = b""
        # Over the limit by its header: Flask answers 413 from the header alone, so nothing is read. A body still
        # arriving is the client's time, bounded by the body timeout; it joins the queue once complete.
        over = bool(declared and _CONTENT_LENGTH.fullmatch(declared) and int(declared) > self.limit)
        if not over:
            try:
                body = await _within(self.body_timeout or None, self._read_body(receive))
            except asyncio.TimeoutError:
                record_refusal(408)
                return await self._answer(send, 408, {"error": f"Request Timeout: expected the whole body within "
                                                               f"{self.body_timeout:g} s, got part of it"}, close=True)
        if len(body) > self.limit:
            # Came without a Content-Length to refuse it by (chunked): only the first limit + 1 bytes were read, which
            # Flask would take for the whole body (and call cut JSON invalid); the rest is left unread, so the
            # connection closes.
            record_refusal(413)
            return await self._answer(send, 413, {"error": f"Request Entity Too Large: expected a body of at most "
                                                           f"{self.limit} bytes, got more"}, close=True)
        if self._full():
            return await self._refuse(send, close=False)
        call: Callable[[], Started]
        route = None if over or self.direct is None else self.direct.match(scope["method"], scope["path"], headers)
        if route is not None and self.direct is not None:
            client = scope.get("client") or ("", 0)
            call = functools.partial(self.direct, route, scope["path"], headers, body, time.perf_counter(), client[0])
            long = len(body) > LONG_BODY
        else:
            environ = self._environ(scope, headers, body)
            call, long = functools.partial(self._call, environ), runs_long(environ, body)
        self.queued += 1
        try:
            status, response_headers, chunks = await self._run(call, long)
        finally:
            self.queued -= 1
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response_headers]})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    def _full(self) -> bool:
        return bool(self.max_queue) and self.queued >= self.max_queue

    async def _refuse(self, send: Send, close: bool) -> None:
        record_refusal(503)
        await self._answer(send, 503, {"error": f"Service Unavailable: this worker has {self.queued} requests "
                                                f"waiting, its limit; retry after a second"},
                           close=close, extra=[("retry-after", "1")])

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

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, or its first limit + 1 bytes (enough to know it is over the limit)."""
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if not message.get("more_body") or size > self.limit:
                break
        return b"".join(parts)

    @staticmethod
    async def _answer(
        send: Send,
        status: int,
        document: dict[str, Any],
        close: bool = False,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """A JSON answer from the front itself, without the app (liveness, 408, 413, 503)."""
        body = orjson.dumps(document)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("x-content-type-options", "nosniff"),
            *(extra or []),
        ]
        if close:
            headers.append(("connection", "close"))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _environ(self, scope: dict[str, Any], headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
        server = scope.get("server") or ("127.0.0.1", 80)
        client = scope.get("client") or ("", 0)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope["method"],
            "SCRIPT_NAME": scope.get("root_path", ""),
            "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
            "SERVER_NAME": str(server[0]),
            "SERVER_PORT": str(server[1]),
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "REMOTE_ADDR": client[0],
            "REMOTE_PORT": str(client[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scope.get("scheme", "http"),
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            ARRIVED: time.perf_counter(),
        }
        for name, value in headers:
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
                if self.grpc is not None:
                    await self.grpc.stop()
                for pool in (self.pool, self.long_pool):
                    if pool is not None:
                        pool.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_asgi_app(threads: int | None = None) -> BufferedWSGI:
    """`create_app()` (settings from ZOO_SERVE_*) behind the buffering ASGI front, with ZOO_SERVE_THREADS threads."""
    app = create_app()
    # torch and onnxruntime leave ~200k long-lived objects that a full collection would walk (50 ms here) in
    # the middle of some request; frozen, they are never scanned again.
    gc.collect()
    gc.freeze()
    return BufferedWSGI(app, threads or int(app.config["THREADS"]))
