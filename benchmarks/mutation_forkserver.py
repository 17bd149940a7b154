"""A fork server for benchmarks/mutation.sh: each mutant's pytest run skips the imports of torch and the other heavy
libraries (about 3 s a run on this machine), because it is a fork of a process that made them once.

    python benchmarks/mutation_forkserver.py serve SOCKET          # imports the libraries, then waits
    python benchmarks/mutation_forkserver.py run SOCKET PYTEST ARGS...   # runs pytest in a fork; exits with its code

The server imports third-party libraries only, never the zoo or the tests: the zoo is imported afresh by each forked
child, after cosmic-ray wrote the mutant, so every run sees the file as it is on disk. `run` is the test command
cosmic-ray starts; it imports nothing heavy. When cosmic-ray kills it (its timeout), the server kills the child's
process group too, so a mutant that loops forever does not outlive its run.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import sys

# Libraries the zoo, the server and the tests import; a missing one is only a slower child, not an error.
PRELOAD = ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "safetensors", "safetensors.torch", "flask",
           "werkzeug", "PIL.Image", "typer", "typer.testing", "click", "prometheus_client", "grpc",
           "pytest", "_pytest.python", "matplotlib", "matplotlib.pyplot", "yaml", "httpx", "requests")


def _receive(connection: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the client went away before its request was complete")
        data += chunk
    return json.loads(data)


def _child(request: dict) -> None:
    """Run pytest as the request says, in this forked process, and leave with its exit code."""
    os.setsid()  # its own process group, so the server can kill whatever the tests started
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.dont_write_bytecode = True  # a mutant written within the same second as the last must not reuse its .pyc
    sys.path[0] = request["cwd"]
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    output = os.open(request["output"], os.O_WRONLY | os.O_TRUNC)
    os.dup2(output, 1)
    os.dup2(output, 2)
    code = 3
    try:
        import pytest

        code = int(pytest.main(request["args"]))
    finally:
        os._exit(code)


def serve(path: str) -> None:
    """Import the libraries, then answer one request at a time with a forked pytest run's exit code."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional library: the child imports it itself, or does without
            pass
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    print(f"fork server ready on {path}", flush=True)
    while True:
        connection, _ = listener.accept()
        with connection:
            try:
                request = _receive(connection)
            except (ConnectionError, ValueError):
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                _child(request)
            code = None
            while code is None:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                    break
                readable, _, _ = select.select([connection], [], [], 0.1)
                if readable and not connection.recv(1):  # the client was killed: so is its run
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    os.waitpid(pid, 0)
                    break
            if code is not None:
                try:
                    connection.sendall(f"{code}\n".encode())
                except OSError:
                    pass


def run(path: str, args: list[str]) -> int:
    """Send pytest's arguments, the working folder and the environment to the server and print its child's output;
    its exit code. Without a server (none started, or it died mid-run) pytest runs here instead, the slow way, so an
    absent server never counts as a failing test."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="mutant-", suffix=".log") as output:
        request = {"cwd": os.getcwd(), "env": dict(os.environ), "args": args, "output": output.name}
        answer = b""
        try:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(path)
            client.sendall(json.dumps(request).encode() + b"\n")
            while not answer.endswith(b"\n"):
                chunk = client.recv(64)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
        sys.stdout.write(open(output.name, errors="replace").read())
        sys.stdout.flush()
    if not answer.endswith(b"\n"):
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])
    code = int(answer)
    # A child killed by a signal (negative) is a failure, as a crashed pytest process would be.
    return code if code >= 0 else 1


if __name__ == "__main__":
    command, socket_path, *rest = sys.argv[1:]
    if command == "serve":
        serve(socket_path)
    else:
        sys.exit(run(socket_path, rest))
