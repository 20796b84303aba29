"""`assistant doctor` against real healthy and broken states: the session index, a missing index, a
Chroma server that is down or empty, LLM servers (speaking the real protocols) that are down or
lack the model, a tiktoken cache without its files, telemetry switched back on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ChromaServer, NetworkGuard
from fake_llm_servers import FakeLLMServer

from assistant import Settings
from assistant.doctor import remote_destinations, run_checks
from assistant.indexing.build import IndexReport

ROOT = Path(__file__).resolve().parents[1]


def doctor(cli_env: Callable[..., dict[str, str]], **variables: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run `assistant doctor`: its exit status, its table as {check: (status, detail)} and its stderr."""
    done = subprocess.run([sys.executable, "-m", "assistant", "doctor"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=cli_env(**variables))
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["check", "status", "detail"]
    width = header.index("status")
    table = {row[:width].strip(): (row[width:].split()[0], row[width:].split(maxsplit=1)[1]) for row in rows}
    return done.returncode, table, done.stderr


def test_a_healthy_install_passes_every_check(index_dir: Path, first_build: IndexReport,
                                              cli_env: Callable[..., dict[str, str]]) -> None:
    status, table, stderr = doctor(cli_env, ASSISTANT_INDEX_DIR=str(index_dir))
    assert (status, stderr) == (0, "")
    assert list(table) == ["embedding model", "tokenizer", "tiktoken cache", "chroma server", "index", "backend",
                           "openai", "ollama", "network"]
    assert {name for name, (state, _) in table.items() if state == "-"} == {"chroma server", "openai", "ollama"}
    assert all(state == "ok" for name, (state, _) in table.items() if name not in ("chroma server", "openai", "ollama"))
    assert table["index"][1].startswith(f"{first_build.papers} papers, {first_build.chunks} chunks in ")
    assert "384 dimensions" in table["embedding model"][1]
    assert table["network"][1].startswith("offline")


def test_each_problem_fails_with_one_line(tmp_path: Path, free_port: Callable[[], int],
                                          cli_env: Callable[..., dict[str, str]]) -> None:
    missing = tmp_path / "no-index"
    with FakeLLMServer("openai") as openai_server:
        openai_server.models = [{"id": "other-model", "object": "model"}, {"id": "another", "object": "model"}]
        status, table, stderr = doctor(
            cli_env, ASSISTANT_INDEX_DIR=str(missing), OLLAMA_HOST=f"http://127.0.0.1:{free_port()}",
            OPENAI_BASE_URL=openai_server.url + "/v1", ASSISTANT_OPENAI_MODEL="test-model",
            ASSISTANT_BACKEND="ollama", TIKTOKEN_CACHE_DIR=str(tmp_path))
    assert status == 1
    failed = {name for name, (state, _) in table.items() if state == "FAIL"}
    assert failed == {"index", "openai", "ollama", "tiktoken cache"}
    assert table["backend"] == ("ok", "ollama answers by default")  # configured, though it is down
    lines = stderr.splitlines()
    assert len(lines) == len(failed) and all(line.startswith("problem: ") for line in lines)
    assert f"problem: index: no index at {missing}; build it with `assistant index`" in lines
    assert "is `ollama serve` running there? (OLLAMA_HOST)" in table["ollama"][1]
    assert "does not list the model 'test-model' (it has: other-model, another)" in table["openai"][1]
    assert "cl100k_base not in" in table["tiktoken cache"][1]
    assert not missing.exists(), "the doctor creates nothing"


def test_a_chroma_server_down_or_empty(chroma_server: ChromaServer, free_port: Callable[[], int],
                                       tmp_path: Path, cli_env: Callable[..., dict[str, str]]) -> None:
    status, table, stderr = doctor(cli_env, ASSISTANT_INDEX_DIR=str(tmp_path),
                                   ASSISTANT_CHROMA_URL=f"http://127.0.0.1:{free_port()}")
    assert status == 1 and table["chroma server"][0] == "FAIL" and table["index"][0] == "-"
    assert stderr.startswith("problem: chroma server: cannot reach the Chroma server at http://127.0.0.1:")

    status, table, stderr = doctor(cli_env, ASSISTANT_INDEX_DIR=str(tmp_path), ASSISTANT_CHROMA_URL=chroma_server.url)
    assert status == 1 and table["chroma server"] == ("ok", f"{chroma_server.url} answers")
    assert table["index"][0] == "FAIL" and "nothing is indexed yet" in table["index"][1]
    # answering would contact a server on this machine only
    assert table["network"][0] == "ok"


def test_a_reachable_llm_with_its_model_passes(index_dir: Path, first_build: IndexReport,
                                               cli_env: Callable[..., dict[str, str]]) -> None:
    with FakeLLMServer("ollama") as ollama_server, FakeLLMServer("openai") as openai_server:
        status, table, stderr = doctor(cli_env, ASSISTANT_INDEX_DIR=str(index_dir), OLLAMA_HOST=ollama_server.url,
                                       ASSISTANT_OLLAMA_MODEL="test-model", ASSISTANT_BACKEND="auto",
                                       OPENAI_BASE_URL=openai_server.url + "/v1", ASSISTANT_OPENAI_MODEL="test-model")
    assert (status, stderr) == (0, "")
    assert table["openai"] == ("ok", f"{openai_server.url}/v1 serves test-model")
    assert table["ollama"] == ("ok", f"{ollama_server.url} serves test-model")
    assert table["backend"] == ("ok", "openai answers by default")
    assert table["network"][0] == "ok"


def test_a_default_backend_that_is_not_configured_fails(index_dir: Path, first_build: IndexReport,
                                                         cli_env: Callable[..., dict[str, str]]) -> None:
    status, table, stderr = doctor(cli_env, ASSISTANT_INDEX_DIR=str(index_dir), ASSISTANT_BACKEND="openai")
    assert status == 1 and table["openai"] == ("-", "not configured")
    assert stderr == ("problem: backend: openai is the default (ASSISTANT_BACKEND) but is not configured; see the "
                      "README's configuration table\n")


def test_telemetry_switched_on_is_a_network_warning(index_dir: Path, first_build: IndexReport,
                                                    cli_env: Callable[..., dict[str, str]]) -> None:
    status, table, _ = doctor(cli_env, ASSISTANT_INDEX_DIR=str(index_dir), GRADIO_ANALYTICS_ENABLED="True")
    assert status == 0 and table["network"] == (
        "warn", "set in the environment: GRADIO_ANALYTICS_ENABLED=True (may reach the network)")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"openai_api_key": "sk-test"}, ["api.openai.com (openai backend)"]),
    ({"openai_base_url": "http://127.0.0.1:8000/v1", "ollama_host": "http://localhost:11434"}, []),
    ({"chroma_url": "http://10.1.2.3:8000", "ollama_host": "gpu-box:11434"},
     ["10.1.2.3 (Chroma server)", "gpu-box (ollama backend)"]),
])
def test_remote_destinations_name_what_leaves_the_machine(changes: dict[str, str], expected: list[str]) -> None:
    assert remote_destinations(Settings.from_env(env={}, **changes)) == expected


def test_the_doctor_itself_connects_nowhere_unless_configured(settings: Settings, first_build: IndexReport,
                                                              block_network: NetworkGuard) -> None:
    checks = run_checks(settings)
    assert [c.status for c in checks if c.status not in ("ok", "-")] == []
    assert block_network.attempts == []
