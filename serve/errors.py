"""The one place where errors become HTTP answers: JSON {"error": "..."} with a 4xx or a 5xx status.

What a client reads names no file of the server's and no hash (`public`); the log keeps the whole message. The
parameters an error names as fixes are said as this server's settings (SPELLING); the HTTP and gRPC fronts both
render errors with `shown`.
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

# The zoo's parameters as this server names them: its settings (create_app's config keys, what `zoo serve`'s flags
# fill in); the zoo's functions keep their Python names, the server has no command for them.
SPELLING = {"weights_dir": "WEIGHTS_DIR", "versions": "VERSIONS", "backend": "BACKEND", "models": "MODELS"}


def public(message: str) -> str:
    """`message` with the server's own paths and file hashes left out, as a client may read it."""
    return _DIGEST.sub("<sha256>", _SERVER_PATH.sub("<server path>", message))


def shown(error: ZooError) -> str:
    """`error`'s message as this server says it: its settings' names (SPELLING), none of its paths or hashes."""
    return public(error.spelled(SPELLING))


def error_answer(error: Exception) -> tuple[int, str]:
    """The status and client-facing message of an error raised while answering: a caller's mistake -> 404 (unknown
    model or version) or 400; a fault of files on disk -> 500 and a log line; an HTTP error keeps its status;
    anything else -> 500 and the traceback in the log."""
    if isinstance(error, ZooError):
        if not error.caller_error:
            log.error("%s: %s", type(error).__name__, error.spelled(SPELLING))
            return 500, f"server fault: {shown(error)}"
        return 404 if isinstance(error, LookupError) else 400, shown(error)
    if isinstance(error, HTTPException):
        return error.code or 500, public(f"{error.name}: {error.description}")
    log.error("unhandled error", exc_info=error)
    return 500, f"internal error ({type(error).__name__}); the server logged the details"


def register_error_handlers(app: Flask) -> None:
    """Flask's answers to every error, through error_answer (405s also say the allowed methods)."""

    @app.errorhandler(Exception)
    def answer(error: Exception) -> tuple[Response, int]:
        status, message = error_answer(error)
        response = jsonify(error=message)
        allowed = getattr(error, "valid_methods", None)  # MethodNotAllowed's
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response, status
