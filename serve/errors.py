"""The one place where errors become HTTP answers: JSON {"error": "..."} with a 4xx or a 5xx status.

What a client reads names no file of the server's and no hash (`public`); the log keeps the whole message.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from zoo.core.errors import ZooError

log = logging.getLogger("zoo.serve")

# An absolute filesystem path (two segments or more, not one of this server's routes), and a sha256 digest.
_SERVER_PATH = re.compile(
    r"(?<![\w.:/-])/(?!(?:v1|v2|models|static|metrics|openapi\.json)\b)[^\s/'\"]+(?:/[^\s'\",;]*)+"
)
_DIGEST = re.compile(r"\b[0-9a-f]{64}\b")


def public(message: str) -> str:
    """`message` with the server's own paths and file hashes left out, as a client may read it."""
    return _DIGEST.sub("<sha256>", _SERVER_PATH.sub("<server path>", message))


def register_error_handlers(app: Flask) -> None:
    """The caller's mistakes -> 404 (unknown model or version) or 400; faults of files on disk -> 500 and a log
    line; HTTP errors keep their status; anything else -> 500."""

    @app.errorhandler(ZooError)
    def zoo_error(error: ZooError) -> tuple[Response, int]:
        if not error.caller_error:
            log.error("%s: %s", type(error).__name__, error)
            return jsonify(error=f"server fault: {public(str(error))}"), 500
        return jsonify(error=public(str(error))), 404 if isinstance(error, LookupError) else 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        response = jsonify(error=public(f"{error.name}: {error.description}"))
        allowed = getattr(error, "valid_methods", None)  # MethodNotAllowed's
        if error.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response, error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return jsonify(error=f"internal error ({type(error).__name__}); the server logged the details"), 500
