"""The app as `zoo serve` runs it: an ASGI front that reads each request's whole body on granian's event loop,
then hands the complete request to the Flask (WSGI) app: on the loop itself with one request thread (the
default), else on a pool of threads.

Under plain WSGI a client that sends its headers and then trickles its body holds a worker thread for as long
as it likes; 50 of them stop a server. Here such a client costs a buffer, not a thread: a thread is taken only
once the request is complete. A body whose Content-Length is over the limit is refused (413) unread.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from flask import Flask

from zoo.serve import create_app

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BufferedWSGI:
    """An ASGI application running a WSGI app on `threads` threads, each request's body read in full first."""

    def __init__(self, app: Flask, threads: int) -> None:
        self.app = app
        self.limit = app.config["MAX_CONTENT_LENGTH"]
        # One request thread is the event loop itself: a hand-off to a pool of one would only add a wake-up and
        # two GIL switches to every request, while the loop could do nothing else with the GIL meanwhile.
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="zoo-request") if threads > 1 else None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        declared = next((value for name, value in headers if name.lower() == "content-length"), None)
        body = b""
        # Over the limit by its header: Flask answers 413 from the header alone, so nothing is read.
        if not (declared and declared.isdigit() and int(declared) > self.limit):
            body = await self._read_body(receive)
        environ = self._environ(scope, headers, body)
        if self.pool is None:
            status, response_headers, chunks = self._call(environ)
        else:
            status, response_headers, chunks = await asyncio.get_running_loop().run_in_executor(self.pool, self._call, environ)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response_headers]})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, or its first limit + 1 bytes (enough for Flask to answer 413)."""
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
        }
        for name, value in headers:
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                key = f"HTTP_{key}"
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], list[bytes]]:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            started[:] = [int(status.split(" ", 1)[0]), headers]
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            chunks = list(result)
        finally:
            getattr(result, "close", lambda: None)()
        return started[0], started[1], chunks

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    self.pool.shutdown(wait=False)
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
