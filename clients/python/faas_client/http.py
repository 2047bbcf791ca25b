"""HTTP to the gateway with the standard library: basic auth where it is
due, JSON in and out, and every failure turned into a FaasError."""

import base64
import http.client
import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request

from .errors import FaasError

# The gateway marks its own 401s with this header (a function's answer
# cannot carry it), so credentials go to a function call only when the
# gateway itself asks for them, as the `faas` CLI does.
AUTH_HEADER = "X-Faas-Auth"


class Response:
    """A finished exchange: ``status``, ``headers`` (case-insensitive) and
    ``body`` (bytes)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def is_json(self):
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        return kind == "application/json" or kind.endswith("+json")

    def json(self):
        return json.loads(self.body)

    def text(self):
        return self.body.decode("utf-8", "replace")


class Transport:
    """Requests to one gateway. Credentials go with ``/system/…`` calls,
    and with function calls only after the gateway's own 401."""

    def __init__(self, url, user, password, timeout):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not a gateway URL (http://HOST:PORT)")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.authorization = None
        if password is not None:
            pair = f"{user}:{password}".encode()
            self.authorization = "Basic " + base64.b64encode(pair).decode()
        # A proxy cannot reach this machine's loopback: skip it there,
        # follow HTTP_PROXY / NO_PROXY elsewhere (like the CLI).
        handlers = [urllib.request.ProxyHandler({})] if _loopback(parts.hostname) else []
        self.opener = urllib.request.build_opener(*handlers)

    def call(self, method, path, body=None, headers=None, auth=True, timeout=None, what=None):
        """The answer to ``method path``; a FaasError for an error status
        (its first line the message, prefixed with ``what``), a refused
        connection or a timeout."""
        headers = dict(headers or {})
        if auth and self.authorization:
            headers["Authorization"] = self.authorization
        response = self._exchange(method, path, body, headers, timeout or self.timeout)
        if (
            response.status == 401
            and not auth
            and self.authorization
            and response.headers.get(AUTH_HEADER)
        ):
            headers["Authorization"] = self.authorization
            response = self._exchange(method, path, body, headers, timeout or self.timeout)
        if response.status >= 400:
            raise _refusal(response, what if what is not None else f"{method} {path}: ")
        return response

    def _exchange(self, method, path, body, headers, timeout):
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=timeout) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, e.headers, e.read())
        except urllib.error.URLError as e:
            raise _unreachable(self.url, method, path, e.reason, timeout) from None
        except (OSError, http.client.HTTPException) as e:
            raise _unreachable(self.url, method, path, e, timeout) from None


def _loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(response, prefix):
    lines = [line for line in response.text().splitlines() if line.strip()]
    message = lines[0] if lines else http.client.responses.get(response.status, "error")
    if response.status == 401 and response.headers.get(AUTH_HEADER):
        message += " (give Gateway(user=..., password=...) or set FAAS_USERNAME and FAAS_PASSWORD)"
    return FaasError(prefix + message, status=response.status, details="\n".join(lines[1:]))


def _unreachable(url, method, path, reason, timeout):
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return FaasError(f"{method} {path}: no answer from the gateway at {url} within {timeout} s")
    if isinstance(reason, ConnectionRefusedError):
        return FaasError(f"cannot reach the gateway at {url}: connection refused")
    if isinstance(reason, socket.gaierror):
        return FaasError(f"cannot reach the gateway at {url}: unknown host ({reason.strerror})")
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return FaasError(f"{method} {path}: the connection to {url} failed: {text}")
