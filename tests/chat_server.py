"""Start the real chat app on a free local port for the API and browser tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from assistant import Assistant
from assistant.chat.app import build_app, serve


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_chat(assistant: Assistant, backends: list[str] | None = None) -> Iterator[str]:
    """The chat for `assistant`, served in this process; yields its URL and closes it afterwards."""
    app = build_app(assistant, backends)
    url = serve(app, "127.0.0.1", free_port(), block=False)
    try:
        yield url
    finally:
        app.close()
