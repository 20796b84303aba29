"""Settings: every environment variable is a Settings field; the README's table and the CLI flags
are made from those fields; bad values are one ConfigError; secrets stay out of repr()."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant import Assistant, ConfigError, Settings, cli
from assistant.answering import BACKENDS, backend_names, configured_backends
from assistant.settings import cli_flags, config_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_configuration_table_is_the_settings_table() -> None:
    assert "\n".join(config_table()) in (ROOT / "README.md").read_text(encoding="utf-8")


def test_only_settings_reads_the_environment() -> None:
    readers = [str(p.relative_to(ROOT)) for p in (ROOT / "assistant").rglob("*.py")
               if re.search(r"os\.environ|getenv\(", p.read_text(encoding="utf-8"))]
    assert sorted(readers) == ["assistant/offline.py", "assistant/settings.py"]  # offline.py: libraries' switches


def test_cli_flags_come_from_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["ask", "q", "--top-k", "7", "--retrieval", "bm25", "--backend", "auto",
                                          "--index-dir", "/tmp/x", "--chroma-url", "http://h:1"])
    settings = Settings.from_env(env={}, **{f.name: getattr(args, f.name) for f in cli_flags()})
    assert (settings.top_k, settings.retrieval, settings.backend) == (7, "bm25", "auto")
    assert (settings.index_dir, settings.chroma_url) == (Path("/tmp/x"), "http://h:1")
    with pytest.raises(SystemExit):
        cli.main(["ask", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(f"env {f.metadata['env']}" in help_text for f in cli_flags())


def test_backend_names_come_from_the_registry() -> None:
    assert backend_names() == [*BACKENDS, "auto"]
    with pytest.raises(ConfigError, match="choose one of extractive, openai, ollama, auto"):
        Settings.from_env(env={"ASSISTANT_BACKEND": "gpt"})
    assert configured_backends(Settings.from_env(env={})) == ["extractive"]
    both = Settings.from_env(env={"OPENAI_API_KEY": "sk-x", "OLLAMA_HOST": "http://127.0.0.1:1"})
    assert configured_backends(both) == ["extractive", "openai", "ollama"]


@pytest.mark.parametrize(("env", "words"), [
    ({"ASSISTANT_TOP_K": "abc"}, "ASSISTANT_TOP_K='abc' cannot be used"),
    ({"ASSISTANT_TOP_K": "0"}, "top_k must be between 1 and 50"),
    ({"ASSISTANT_RETRIEVAL": "fuzzy"}, "choose one of hybrid, dense, bm25"),
    ({"ASSISTANT_EMBED_THREADS": "-1"}, "embed_threads"),
])
def test_bad_values_are_a_config_error(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)) as exc:
        Settings.from_env(env=env)
    assert isinstance(exc.value, ValueError)


def test_secrets_are_read_but_not_shown() -> None:
    settings = Settings.from_env(env={"OPENAI_API_KEY": "sk-hidden", "OLLAMA_API_KEY": "ol-hidden",
                                      "ASSISTANT_CHAT_AUTH": "alice:pw-hidden"})
    assert (settings.openai_api_key, settings.ollama_api_key) == ("sk-hidden", "ol-hidden")
    assert settings.chat_login == ("alice", "pw-hidden")
    assert "hidden" not in repr(settings)


def test_embed_threads_reach_the_encoder(tmp_path: Path) -> None:
    bot = Assistant(Settings.from_env(env={"ASSISTANT_EMBED_THREADS": "1"}, index_dir=tmp_path))
    assert bot.encoder.encoder.threads == 1
