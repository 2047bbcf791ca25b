#!/usr/bin/env python3
"""faas warm runner for Python handlers.

One long-lived process per replica: the watchdog (mode=http) starts it and
proxies every call to it over keep-alive connections. The handler is loaded
once, at start. Standard library only, so it runs on a bare Debian python3.

Handler shapes (found in the function folder, first match wins; FAAS_HANDLER
names one outright, as FILE.py:FUNCTION):

  handler.py  handle(event, context)   OpenFaaS python3-http: event.body
                                       (bytes), .headers, .method, .query,
                                       .path; returns a dict {statusCode,
                                       body, headers}, a str, bytes or None
  handler.py  handle(req)              OpenFaaS classic python3: str in, str out
  fn.py       fn(input, headers)       tinyFaaS: str or None in, str out
  *.py        main(args, context)      FaaSpot: the JSON object in, JSON out
  *.py        f(request, context)      FaaSET: the JSON object in, a dict out

Each answer carries the call's own CPU time (X-Cpu-User-Seconds,
X-Cpu-System-Seconds: the serving thread's, so concurrent calls do not
blur), the process's peak memory (X-Max-Rss-Bytes) and X-Cold-Start on the
first call this process serves.

`python3 runner.py --check` loads the handler, prints its shape and exits:
the build runs it, so a missing handler fails the build, not the first call.
"""

import asyncio
import importlib.util
import inspect
import json
import os
import resource
import site
import socket
import sys
import threading
import traceback
from urllib.parse import parse_qs, urlsplit

ROOT = os.path.dirname(os.path.abspath(__file__))
FUNCTION_DIR = os.path.join(ROOT, "function")
# Dependencies from requirements.txt, installed here at build time
# (pip install --target): a site dir, so their .pth files are honoured.
DEPS_DIR = os.path.join(ROOT, "python")

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100


def env_bytes(name, default):
    """A size from the environment, as the watchdog reads it (0 = none)."""
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return default
    units = {"kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}
    for suffix, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text.rstrip("b"))


MAX_BODY_BYTES = env_bytes("max_body_bytes", 0)


class HandlerError(Exception):
    """The function folder holds no handler this runner knows."""


class BadRequest(Exception):
    """The caller sent what the handler's shape cannot take (a 400)."""


# ---------------------------------------------------------------- handlers


def load_module(path):
    name = os.path.splitext(os.path.basename(path))[0]
    # Imported as function.NAME when the folder is a package (OpenFaaS's
    # `from .util import x`), else as a top-level module (tinyFaaS, FaaSpot).
    if os.path.isfile(os.path.join(FUNCTION_DIR, "__init__.py")):
        return importlib.import_module("function." + name)
    # A module already loaded under that name (json.py: the runner's own
    # json) is not replaced: the handler's `import json` must still get it.
    if name in sys.modules:
        name = "_faas_handler_" + name
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def positional(func):
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def shape_of(name, func):
    """The shape a named function has, or None."""
    params = positional(func)
    if name == "handle":
        return "openfaas" if len(params) >= 2 else "classic"
    if name == "fn":
        return "tinyfaas"
    if name == "main" or params[:2] == ["request", "context"]:
        return "json"
    return None


def find_handler():
    """(shape, callable, where) for the function folder's handler."""
    named = os.environ.get("FAAS_HANDLER", "").strip()
    if named:
        file, _, func = named.partition(":")
        path = os.path.join(FUNCTION_DIR, file)
        if not os.path.isfile(path):
            raise HandlerError(f"FAAS_HANDLER names {file!r}, which is not in the function folder")
        module = load_module(path)
        target = getattr(module, func or "handle", None)
        if not callable(target):
            raise HandlerError(f"{file} defines no function {func or 'handle'!r} (FAAS_HANDLER)")
        return shape_of(func or "handle", target) or "json", target, named
    if not os.path.isdir(FUNCTION_DIR):
        raise HandlerError("there is no function folder beside the runner")
    files = sorted(f for f in os.listdir(FUNCTION_DIR) if f.endswith(".py") and f != "__init__.py")
    known = [f for f in ("handler.py", "fn.py", "main.py") if f in files]
    candidates = known or (files if len(files) == 1 else [])
    for file in candidates:
        module = load_module(os.path.join(FUNCTION_DIR, file))
        for name in ("handle", "fn", "main"):
            target = getattr(module, name, None)
            if callable(target) and getattr(target, "__module__", None) == module.__name__:
                return shape_of(name, target), target, f"{file}:{name}"
        own = [
            (n, f)
            for n, f in vars(module).items()
            if inspect.isfunction(f) and f.__module__ == module.__name__ and shape_of(n, f)
        ]
        if len(own) == 1:
            return shape_of(*own[0]), own[0][1], f"{file}:{own[0][0]}"
    raise HandlerError(
        "no handler found: write handler.py with handle(event, context), fn.py with "
        "fn(input, headers), or a .py file with main(args, context) "
        f"(the function folder has {', '.join(files) or 'no .py file'})"
    )


class Event:
    """OpenFaaS python3-http's event."""

    __slots__ = ("body", "headers", "method", "query", "path")

    def __init__(self, request):
        self.body = request.body
        self.headers = request.headers
        self.method = request.method
        self.path = request.path
        self.query = {k: v[-1] for k, v in parse_qs(request.query).items()}


class Context:
    """What a handler may want to know about where it runs."""

    def __init__(self):
        self.hostname = os.environ.get("HOSTNAME", socket.gethostname())
        self.function_name = os.environ.get("FAAS_FUNCTION", "")

    def get(self, key, default=None):  # FaaSpot's context is a dict
        return getattr(self, key, default)

    def __getitem__(self, key):
        return getattr(self, key)


def json_args(request):
    if not request.body.strip():
        return {}
    try:
        args = json.loads(request.body)
    except ValueError as e:
        raise BadRequest(f"the body is not JSON: {e}") from None
    if not isinstance(args, dict):
        raise BadRequest("the body must be a JSON object (this handler takes args by name)")
    return args


def as_body(value, headers):
    """Bytes for a handler's result, setting the content type it implies."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(value).encode()
    return str(value).encode()


_loops = threading.local()


def settle(result):
    """Runs an async handler's coroutine to its end, on this thread's loop."""
    if not inspect.isawaitable(result):
        return result
    loop = getattr(_loops, "loop", None)
    if loop is None:
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(result)


def call(shape, handler, context, request):
    """(status, headers, body) for one request."""
    headers = {}
    if shape == "openfaas":
        result = settle(handler(Event(request), context))
        if isinstance(result, dict):
            status = int(result.get("statusCode", 200))
            for key, value in (result.get("headers") or {}).items():
                headers[str(key)] = str(value)
            body = result.get("body", "")
            return status, headers, as_body(body, headers)
        return 200, headers, as_body(result, headers)
    if shape == "classic":
        text = request.body.decode("utf-8", "replace")
        return 200, headers, as_body(settle(handler(text)), headers)
    if shape == "tinyfaas":
        text = request.body.decode("utf-8", "replace") if request.body else None
        return 200, headers, as_body(settle(handler(text, dict(request.headers))), headers)
    result = settle(handler(json_args(request), context))
    return 200, headers, as_body(result, headers)


# ---------------------------------------------------------------- HTTP/1.1

REASONS = {200: "OK", 400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error"}


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "close")


class Headers(dict):
    """Case-insensitive lookups; the keys themselves in canonical case
    (`X-Team`), as tinyFaaS's and Flask's handlers see them."""

    def __init__(self):
        super().__init__()
        self._lower = {}

    def add(self, name, value):
        self["-".join(part.capitalize() for part in name.split("-"))] = value
        self._lower[name.lower()] = value

    def get(self, key, default=None):
        return self._lower.get(key.lower(), default)

    def __getitem__(self, key):
        return self._lower[key.lower()]

    def __contains__(self, key):
        return key.lower() in self._lower


class Closed(Exception):
    pass


class Conn:
    """One keep-alive connection from the watchdog, served on its own thread."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self.buf += chunk

    def read_until(self, mark, limit):
        while True:
            at = self.buf.find(mark)
            if at >= 0:
                line, self.buf = self.buf[:at], self.buf[at + len(mark) :]
                return line
            if len(self.buf) > limit:
                raise BadRequest("request head too large")
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_request(self):
        head = self.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            raise BadRequest("malformed request line") from None
        if len(lines) > MAX_HEADERS + 1:
            raise BadRequest("too many headers")
        request = Request()
        request.method = method
        url = urlsplit(target)
        request.path, request.query = url.path or "/", url.query
        headers = request.headers = Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest("malformed header line")
            headers.add(name.strip(), value.strip())
        connection = headers.get("connection", "").lower()
        request.close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            request.body = self.read_chunked()
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise BadRequest("bad Content-Length") from None
            if MAX_BODY_BYTES and length > MAX_BODY_BYTES:
                raise TooLarge()
            request.body = self.read_exact(length) if length else b""
        return request

    def read_chunked(self):
        parts, total = [], 0
        while True:
            size_line = self.read_until(b"\r\n", 1024)
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if size == 0:
                while self.read_until(b"\r\n", MAX_HEAD_BYTES):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if MAX_BODY_BYTES and total > MAX_BODY_BYTES:
                raise TooLarge()
            parts.append(self.read_exact(size))
            self.read_exact(2)

    def send(self, status, headers, body, close=False):
        out = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"]
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                continue  # never let a handler split the response
            out.append(f"{name}: {value}\r\n")
        out.append(f"Content-Length: {len(body)}\r\n")
        if close:
            out.append("Connection: close\r\n")
        out.append("\r\n")
        self.sock.sendall("".join(out).encode("latin-1") + body)


class TooLarge(Exception):
    pass


def one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Server:
    def __init__(self, shape, handler, where):
        self.shape, self.handler, self.where = shape, handler, where
        self.context = Context()
        self.cold = True
        self.cold_lock = threading.Lock()

    def take_cold(self):
        with self.cold_lock:
            cold, self.cold = self.cold, False
        return cold

    def serve(self, sock):
        conn = Conn(sock)
        try:
            while True:
                try:
                    request = conn.read_request()
                except BadRequest as e:
                    conn.send(400, {"Content-Type": "text/plain"}, f"{e}\n".encode(), close=True)
                    return
                except TooLarge:
                    conn.send(413, {"Content-Type": "text/plain"}, b"request body too large\n", close=True)
                    return
                self.answer(conn, request)
                if request.close:
                    return
        except (Closed, ConnectionError):
            return
        finally:
            sock.close()

    def answer(self, conn, request):
        cold = self.take_cold()
        before = resource.getrusage(resource.RUSAGE_THREAD)
        try:
            status, headers, body = call(self.shape, self.handler, self.context, request)
        except BadRequest as e:
            status, headers, body = 400, {"Content-Type": "text/plain"}, f"{e}\n".encode()
        except Exception as e:  # the handler's failure: a 500 saying what it raised
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            message = f"the handler raised {type(e).__name__}: {one_line(e)}\n"
            status, headers, body = 500, {"Content-Type": "text/plain"}, message.encode()
        after = resource.getrusage(resource.RUSAGE_THREAD)
        headers["X-Cpu-User-Seconds"] = f"{max(0.0, after.ru_utime - before.ru_utime):.6f}"
        headers["X-Cpu-System-Seconds"] = f"{max(0.0, after.ru_stime - before.ru_stime):.6f}"
        headers["X-Max-Rss-Bytes"] = str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        if cold:
            headers["X-Cold-Start"] = "true"
        conn.send(status, headers, body, close=request.close)


def listen_address():
    port = os.environ.get("PORT")
    if port:
        return "127.0.0.1", int(port)
    url = urlsplit(os.environ.get("upstream_url", "http://127.0.0.1:8082"))
    return url.hostname or "127.0.0.1", url.port or 8082


def main():
    if os.path.isdir(DEPS_DIR):
        # Ahead of the interpreter's own packages: the function's pinned
        # versions win.
        before = list(sys.path)
        site.addsitedir(DEPS_DIR)
        sys.path[:] = [p for p in sys.path if p not in before] + before
    sys.path.insert(0, FUNCTION_DIR)
    sys.path.insert(0, ROOT)
    try:
        shape, handler, where = find_handler()
    except HandlerError as e:
        print(f"runner: {e}", file=sys.stderr)
        return 2
    if "--check" in sys.argv[1:]:
        print(f"handler {where} ({shape})")
        return 0
    os.chdir(FUNCTION_DIR)
    server = Server(shape, handler, where)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen_address())
    listener.listen(1024)
    print(f"runner: serving {where} ({shape}) on {listener.getsockname()[1]}", file=sys.stderr, flush=True)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=server.serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
