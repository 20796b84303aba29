"""Shared fixtures: one real index (real corpus, real model, real Chroma) built once per session,
free ports, `chroma run` servers, the environment of `assistant` subprocesses, LLM settings for the
fake servers, and the chat served on a local port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from assistant import Assistant, Paper, Settings
from assistant.corpus.parse import load_corpus
from assistant.indexing.build import IndexReport
from assistant.indexing.index import PaperIndex

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a complete index of the bundled corpus."""
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="session")
def settings(index_dir: Path) -> Settings:
    """Settings pointing at the session index, ignoring the caller's environment."""
    return Settings.from_env(env={}, index_dir=index_dir)


@pytest.fixture(scope="session")
def first_build(settings: Settings) -> IndexReport:
    """The report of the cold build of the session index."""
    return PaperIndex(settings).build(progress=False)


@pytest.fixture(scope="session")
def assistant(settings: Settings, first_build: IndexReport) -> Assistant:
    """A long-lived Assistant over the session index. Tests that need other settings derive their
    own with `assistant.with_settings(...)` (cheap: it shares the model) and never change this one."""
    return Assistant(settings)


@pytest.fixture(scope="session")
def bundled_papers() -> list[Paper]:
    """The bundled corpus, parsed once: real papers for tests that index small files of their own."""
    return load_corpus().papers


# -- the network -----------------------------------------------------------------------------------
class NetworkGuard:
    """Blocks and records every connection and name lookup this process attempts, except connections
    to the loopback ports a test allows (its own app's)."""

    def __init__(self) -> None:
        self.attempts: list[object] = []
        self.allowed_ports: set[int] = set()

    def allows(self, address: object) -> bool:
        return (isinstance(address, tuple) and len(address) >= 2 and address[0] in ("127.0.0.1", "::1", "localhost")
                and address[1] in self.allowed_ports)


@pytest.fixture
def block_network(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    """No connection leaves this process (nor reaches another local one) but to `allowed_ports`;
    `attempts` lists what was tried. Covers `connect`, `connect_ex` and name lookups."""
    guard = NetworkGuard()
    real_connect, real_connect_ex, real_lookup = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        if not guard.allows(address):
            guard.attempts.append(address)
            raise OSError("network disabled in this test")
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        if not guard.allows(address):
            guard.attempts.append(address)
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> object:
        if host not in (None, "127.0.0.1", "::1", "localhost", "0.0.0.0"):
            guard.attempts.append(("lookup", host, port))
            raise socket.gaierror("name lookups disabled in this test")
        return real_lookup(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return guard


# -- processes and ports ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Call it for a loopback port nothing listens on right now (bound, then released)."""
    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    return pick


@pytest.fixture(scope="session")
def cli_env() -> Callable[..., dict[str, str]]:
    """Call it for the environment of an `assistant` subprocess: ours, minus the caller's assistant,
    OpenAI and Ollama settings, with the package importable and the given variables set."""
    def env(**variables: str) -> dict[str, str]:
        kept = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_", "OLLAMA_"))}
        return {**kept, "PYTHONPATH": str(ROOT), **variables}
    return env


class ChromaServer:
    """`chroma run` on a free port, which a test can kill, restart, pause and resume."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        chroma = Path(sys.executable).with_name("chroma")
        assert chroma.exists(), f"the chromadb wheel's `chroma` command is missing next to {sys.executable}"
        self.proc = subprocess.Popen([str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.proc.poll() is None, "chroma run exited"
                time.sleep(0.1)
        raise AssertionError("chroma run did not start listening within 60 s")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def signal(self, number: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(number)


@pytest.fixture(scope="session")
def chroma_servers(tmp_path_factory: pytest.TempPathFactory,
                   free_port: Callable[[], int]) -> Iterator[Callable[[], ChromaServer]]:
    """Call it for a started `chroma run` server with a data folder of its own; all are stopped at
    the end of the session (a test may stop its own earlier)."""
    started: list[ChromaServer] = []

    def start() -> ChromaServer:
        server = ChromaServer(tmp_path_factory.mktemp("chroma"), free_port())
        started.append(server)
        server.start()
        return server
    yield start
    for server in started:
        server.kill()


@pytest.fixture
def chroma_server(chroma_servers: Callable[[], ChromaServer]) -> Iterator[ChromaServer]:
    """A Chroma server of this test's own."""
    server = chroma_servers()
    yield server
    server.kill()


# -- LLM backends ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def llm_settings() -> Callable[[str, str], dict[str, object]]:
    """Call it with a protocol ('openai' or 'ollama') and a fake server's URL for the settings that
    point that backend at it."""
    def changes(protocol: str, url: str) -> dict[str, object]:
        if protocol == "openai":
            return {"backend": "openai", "openai_base_url": url + "/v1", "openai_model": "test-model"}
        return {"backend": "ollama", "ollama_host": url, "ollama_model": "test-model"}
    return changes


# -- the chat --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def running_chat(free_port: Callable[[], int]) -> Callable[..., AbstractContextManager[str]]:
    """Call it with an Assistant (and optionally the backends to offer) for a context that serves
    the real chat app in this process on a free port and yields its URL."""
    from assistant.chat.app import build_app, serve

    @contextmanager
    def chat(assistant: Assistant, backends: list[str] | None = None) -> Iterator[str]:
        app = build_app(assistant, backends)
        url = serve(app, "127.0.0.1", free_port(), block=False)
        try:
            yield url
        finally:
            app.close()
    return chat


@pytest.fixture(scope="session")
def chat_url(assistant: Assistant, running_chat: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    """The chat over the session index, shared by the API and browser tests."""
    with running_chat(assistant) as url:
        yield url
