"""Scripted stand-ins for hosted LLMs that speak the real wire protocols over HTTP on 127.0.0.1.

- OpenAI: `POST /v1/chat/completions`, a `chat.completion` JSON object, or with `"stream": true`
  server-sent events (`data: {chat.completion.chunk}` … `data: [DONE]`), chunked transfer encoding.
- Ollama: `POST /api/chat`, one JSON object with `"stream": false`, else NDJSON lines ending with
  `"done": true`; errors as `{"error": "..."}`.

Each request takes the next scripted `Reply` (the last one repeats) and is recorded in `requests`.
An OpenAI server also answers `GET /v1/models` (and `GET /props`, as llama.cpp's `llama-server`)
with what the test sets in `models` and `props`; a client that hangs up while a reply is being
prepared or streamed is counted in `disconnects`.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BROKEN_JSON = '{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": '


@dataclass
class Reply:
    """One scripted response."""

    content: str | None = ""
    chunks: list[str] | None = None            # how a streamed reply is cut (default: by word)
    status: int = 200
    error: str = ""                            # error message when status is not 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                         # seconds to wait before the response starts
    malformed: bool = False                    # send broken JSON instead of a completion
    body: Any = None                           # send this (valid) JSON instead of a completion
    gate: threading.Event | None = None        # when streaming: after the first chunk, wait until set
    finish: str | None = "stop"                # finish reason; None: the stream just ends (no [DONE])
    drop: bool = False                         # when streaming: hang up after the first chunk (a crash)

    def pieces(self) -> list[str]:
        """The streamed pieces of the content."""
        if self.chunks is not None:
            return self.chunks
        words = (self.content or "").split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)] if self.content else []


@dataclass
class Received:
    """A request the server got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        """All message contents joined (system + user)."""
        return "\n".join(m.get("content") or "" for m in self.body.get("messages", []))


class FakeLLMServer:
    """A threaded HTTP server speaking the `openai` or `ollama` protocol with scripted replies."""

    def __init__(self, protocol: str, port: int = 0) -> None:
        if protocol not in ("openai", "ollama"):
            raise ValueError(f"unknown protocol {protocol!r}")
        self.protocol = protocol
        self.requests: list[Received] = []
        self.finished = 0                          # responses sent completely
        self.disconnects = 0                       # clients that hung up before the reply was complete
        self.models: list[dict[str, Any]] = [{"id": "test-model", "object": "model", "owned_by": "me"}]
        self.props: dict[str, Any] | None = None   # GET /props (404 when None)
        self._replies: list[Reply] = [Reply("Fine [1].")]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", port), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234 (the OpenAI client wants `url + '/v1'`)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        """Replies for the next requests, in order; the last one repeats."""
        with self._lock:
            self._replies = list(replies)

    def next_reply(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    """Ignores clients that hang up early (a timed-out request, a closed stream)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            if server.protocol == "openai" and self.path == "/v1/models":
                self._send_json(200, {"object": "list", "data": server.models})
            elif server.protocol == "openai" and self.path == "/props" and server.props is not None:
                self._send_json(200, server.props)
            else:
                self._send_json(404, _error_body(server.protocol, f"no route {self.path}"))

        def client_left(self, seconds: float) -> bool:
            """Wait up to `seconds` (less if the server stops); True, and counted, if the client hung up."""
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not server.stopping:
                readable, _, _ = select.select([self.connection], [], [], min(0.05, deadline - time.monotonic()))
                if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                    server.disconnects += 1
                    self.hung_up = True
                    return True
            return False

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            expected = "/v1/chat/completions" if server.protocol == "openai" else "/api/chat"
            if self.path != expected:
                self._send_json(404, _error_body(server.protocol, f"no route {self.path}"))
                return
            self.hung_up = False
            body = json.loads(raw or b"{}")
            reply = server.next_reply(Received(self.path, dict(self.headers), body))
            if reply.delay and self.client_left(reply.delay):
                return
            if reply.status != 200:
                self._send_json(reply.status, _error_body(server.protocol, reply.error), reply.headers)
            elif server.protocol == "openai":
                self._openai(body, reply)
            else:
                self._ollama(body, reply)
            if not self.hung_up:
                server.finished += 1

        # -- OpenAI ----------------------------------------------------------------------
        def _openai(self, body: dict[str, Any], reply: Reply) -> None:
            model = body.get("model", "")
            if not body.get("stream", False):
                if reply.malformed or reply.body is not None:
                    payload = BROKEN_JSON if reply.malformed else json.dumps(reply.body)
                    self._send_raw(200, "application/json", payload.encode())
                    return
                self._send_json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                                 "logprobs": None, "finish_reason": reply.finish or "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                })
                return

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                     "finish_reason": finish}]}
                return f"data: {json.dumps(data)}\n\n".encode()

            if reply.body is not None:
                self._stream("text/event-stream", [f"data: {json.dumps(reply.body)}\n\n".encode()], reply, 1)
                return
            events = [chunk({"role": "assistant", "content": ""})]
            events += [chunk({"content": p}) for p in reply.pieces()]
            if reply.malformed:
                events.append(f"data: {BROKEN_JSON}\n\n".encode())
            if reply.finish is not None:
                events += [chunk({}, reply.finish), b"data: [DONE]\n\n"]
            self._stream("text/event-stream", events, reply, first=2)

        # -- Ollama ----------------------------------------------------------------------
        def _ollama(self, body: dict[str, Any], reply: Reply) -> None:
            model = body.get("model", "")
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

            def part(content: str, done: bool) -> dict[str, Any]:
                data: dict[str, Any] = {"model": model, "created_at": stamp,
                                        "message": {"role": "assistant", "content": content}, "done": done}
                if done:
                    data.update(done_reason=reply.finish or "stop", total_duration=1_000_000, load_duration=1000,
                                prompt_eval_count=100, prompt_eval_duration=1000, eval_count=20,
                                eval_duration=1000)
                return data

            if not body.get("stream", True):
                if reply.malformed or reply.body is not None:
                    payload = BROKEN_JSON if reply.malformed else json.dumps(reply.body)
                    self._send_raw(200, "application/json; charset=utf-8", payload.encode())
                else:
                    self._send_json(200, part(reply.content or "", True))
                return
            if reply.body is not None:
                self._stream("application/x-ndjson", [(json.dumps(reply.body) + "\n").encode()], reply, 1)
                return
            lines = [(json.dumps(part(p, False)) + "\n").encode() for p in reply.pieces()]
            if reply.malformed:
                lines.append((BROKEN_JSON + "\n").encode())
            if reply.finish is not None:
                lines.append((json.dumps(part("", True)) + "\n").encode())
            self._stream("application/x-ndjson", lines, reply, first=1)

        # -- plumbing --------------------------------------------------------------------
        def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send_raw(status, "application/json", json.dumps(data).encode(), headers)

        def _send_raw(self, status: int, ctype: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self, ctype: str, events: list[bytes], reply: Reply, first: int) -> None:
            """Chunked transfer encoding, one chunk per event; pauses at `reply.gate` after `first`."""
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, event in enumerate(events):
                if i == first and reply.drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if i == first and reply.gate is not None:
                    while not reply.gate.is_set() and not server.stopping:
                        if self.client_left(0.05):
                            return
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def _error_body(protocol: str, message: str) -> dict[str, Any]:
    if protocol == "openai":
        return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return {"error": message}
