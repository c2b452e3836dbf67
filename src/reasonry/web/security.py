"""The web app's guard (pure ASGI): token, same-origin checks for writes, body size limit, security headers."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
COOKIE = "reasonry_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK_HOSTS


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """Wraps the app. With a token every request must carry it (header, or the cookie set by a one-time
    `?token=` URL); without one (loopback only) the Host must be a loopback name (DNS rebinding). Writes also
    need a header a cross-site form cannot send (`X-Reasonry`, `Authorization` or the token header) and a
    same-origin `Origin` when one is sent."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int = 1 << 20) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        send = _with_headers(send)
        by_header = False
        if self.token:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if method == "GET" and "token" in query:
                await self._login(scope, query, send)
                return
            by_header = self._matches(_bearer(headers)) or self._matches(headers.get("x-reasonry-token"))
            if not by_header and not self._matches(_cookie(headers)):
                await _error(send, 401, "a token is required: open the URL printed by `reasonry serve`, or send "
                                        "'Authorization: Bearer TOKEN' or 'X-Reasonry-Token: TOKEN'")
                return
        elif not is_loopback(_host_name(headers.get("host", ""))):
            await _error(send, 403, "unexpected Host header; this server answers on 127.0.0.1 only")
            return
        if method not in SAFE_METHODS:
            problem = self._write_problem(headers, by_header)
            if problem:
                await _error(send, *problem)
                return
            body = await _read_body(receive, headers, self.max_body)
            if body is None:
                await _error(send, 413, f"request body larger than {self.max_body} bytes")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _matches(self, value: str | None) -> bool:
        return bool(value) and self.token is not None and secrets.compare_digest(value.encode(), self.token.encode())

    def _write_problem(self, headers: dict[str, str], by_header: bool) -> tuple[int, str] | None:
        """(status, message) when a state-changing request may come from another site."""
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site request refused"
        origin = headers.get("origin")
        host = headers.get("host", "")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            return 403, "cross-origin request refused"
        custom = by_header or headers.get("x-reasonry") == "1" or (not self.token and "authorization" in headers)
        if not custom:
            return 403, "a write needs the header 'X-Reasonry: 1' (or the token header)"
        length = headers.get("content-length")
        if length not in (None, "0") and not headers.get("content-type", "").startswith("application/json"):
            return 415, "send JSON (Content-Type: application/json)"
        return None

    async def _login(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        if not self._matches(query.pop("token")):
            await _error(send, 401, "wrong token")
            return
        location = scope["path"] + (f"?{urlencode(query)}" if query else "")
        if not location.startswith("/") or location.startswith("//"):
            location = "/"
        cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode()),
                                (b"cache-control", b"no-store"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _cookie(headers: dict[str, str]) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is no token
        return None
    return jar[COOKIE].value if COOKIE in jar else None


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    """The whole body, or None when it is (or says it is) larger than `limit`."""
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in names]
        await send(message)

    return wrapped


async def _error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
