"""The question end, through the API and the `assistant` command: unusable questions are clear
errors (one line and exit status 2 in the CLI), bad configuration is one line, API keys never
reach output, logs or files, and the chat listens on loopback unless told otherwise."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_llm_servers import FakeLLMServer, Reply

from assistant import Assistant, BackendError, InvalidQuestionError, Settings, cli
from assistant.answering.citations import REFUSAL

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How does ShadowKV cut KV-cache memory?"

UNUSABLE = {
    "empty": "",
    "whitespace": " \n\t \r ",
    "100 kB": "why " * 25_000,
    "control characters": "\x00\x01\x02\x1b\x7f\x9b",
    "only punctuation": "?!.,;:-…",
    "only emoji": "🙂 🙂",
    "zero-width": "\u200b\ufeff\u200b",
}


def shadowkv(answer: object) -> bool:
    return any("ShadowKV" in c.title for c in answer.citations)  # type: ignore[attr-defined]


# -- questions through the API --------------------------------------------------------------------
@pytest.mark.parametrize("question", [*UNUSABLE.values(), None, b"What is ShadowKV?", 42],
                         ids=[*UNUSABLE, "None", "bytes", "int"])
def test_unusable_question_is_a_clear_error(assistant: Assistant, question: object) -> None:
    with pytest.raises(InvalidQuestionError) as exc:
        assistant.answer(question)  # type: ignore[arg-type]
    assert isinstance(exc.value, ValueError)
    assert str(exc.value).startswith("the question") and "\n" not in str(exc.value)


def test_the_length_limit_is_named_and_applies_to_the_cleaned_text(assistant: Assistant) -> None:
    limit = assistant.settings.max_question_chars
    with pytest.raises(InvalidQuestionError, match=f"the limit is {limit}"):
        assistant.answer("a" * (limit + 1))
    assert shadowkv(assistant.answer(QUESTION + " " * (2 * limit)))  # padding is not content


@pytest.mark.parametrize(("question", "cited"), [
    ("ShadowKVはKVキャッシュのメモリをどう減らすのか?", "ShadowKV"),  # the system's name carries it
    ("¿Cómo reduce ShadowKV la memoria de la caché KV?", "ShadowKV"),  # the name and "KV" carry it
    ("Что такое пингвин?", None),
], ids=["japanese", "spanish", "russian"])
def test_non_english_question_gets_a_clear_answer_or_refusal(assistant: Assistant, question: str,
                                                             cited: str | None) -> None:
    answer = assistant.answer(question)
    if cited is None:
        assert answer.refused and answer.text == REFUSAL and not answer.citations
    else:
        assert not answer.refused and cited in answer.citations[0].title


def test_control_characters_around_a_real_question_are_dropped(assistant: Assistant) -> None:
    answer = assistant.answer("\x00How does\x07 ShadowKV\tcut KV-cache\r\nmemory?\x7f")
    assert answer.question == QUESTION and shadowkv(answer)


@pytest.mark.parametrize("options", [{"top_k": 0}, {"top_k": -1}, {"top_k": 51}, {"top_k": "5"},
                                     {"top_k": 2.5}, {"top_k": True}, {"retrieval": "fuzzy"},
                                     {"backend": "gpt-9"}], ids=str)
def test_bad_per_question_option_is_a_clear_error(assistant: Assistant, options: dict) -> None:
    with pytest.raises(InvalidQuestionError) as exc:
        assistant.answer(QUESTION, **options)
    assert str(next(iter(options.values()))) in str(exc.value)


# -- questions through the CLI --------------------------------------------------------------------
@pytest.fixture
def ask(index_dir: Path, first_build: object, capsys: pytest.CaptureFixture[str]) -> Callable:
    """`assistant ask ...` in this process over the session index: (exit status, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(["ask", *args, "--index-dir", str(index_dir)])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.mark.parametrize("question", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_cli_unusable_question_exits_2_with_one_line(ask: Callable, question: str) -> None:
    code, out, err = ask(question)
    assert code == cli.EXIT_BAD_INPUT and out == ""
    assert err.startswith("error: the question") and err.count("\n") == 1, err


def test_cli_non_english_question_is_a_refusal_with_exit_0(ask: Callable) -> None:
    code, out, err = ask("Что такое пингвин?")
    assert (code, out.strip(), err) == (0, REFUSAL, "")


def test_cli_several_questions_are_one_conversation(ask: Callable) -> None:
    code, out, err = ask("Which papers shrink the KV cache?", "tell me more about the second one")
    first, second = out.split("\n\n> ")
    assert code == 0 and err == "" and first.startswith("> Which papers shrink the KV cache?\n- ")
    assert second.startswith("tell me more about the second one\n(About [")
    assert "asked as “What is " in second.splitlines()[1]
    code, out, _ = ask("What is ShadowKV?", "and its speedup?", "--json")
    first_json, follow_json = (json.loads(line) for line in out.splitlines())
    assert follow_json["asked_as"] == "and ShadowKV's speedup?"
    assert follow_json["about"] == [first_json["citations"][0]["paper_id"]]


def test_cli_bad_top_k_exits_2(ask: Callable) -> None:
    code, out, err = ask(QUESTION, "--top-k", "0")
    assert code == cli.EXIT_BAD_INPUT and out == "" and "top_k" in err and err.count("\n") == 1


def test_cli_undecodable_bytes_fail_before_any_index_is_built(tmp_path: Path, cli_env: Callable) -> None:
    index = tmp_path / "never-built"
    done = subprocess.run([sys.executable, "-m", "assistant", "ask", b"\xff\xfe?\xc3"], capture_output=True,
                          env=cli_env(ASSISTANT_INDEX_DIR=str(index)), timeout=300, cwd=ROOT)
    assert done.returncode == cli.EXIT_BAD_INPUT and done.stdout == b""
    assert done.stderr == b"error: the question has no words in it\n"
    assert not index.exists()


@pytest.mark.parametrize("command", ["ask", "index"])
@pytest.mark.parametrize(("var", "value", "code", "words"), [
    ("ASSISTANT_TOP_K", "abc", cli.EXIT_BAD_INPUT, "error: ASSISTANT_TOP_K='abc' cannot be used"),
    ("ASSISTANT_LLM_STREAM", "maybe", cli.EXIT_BAD_INPUT, "error: ASSISTANT_LLM_STREAM='maybe' cannot be used"),
    ("ASSISTANT_INDEX_DIR", "{file}", cli.EXIT_FAILURE, "error: cannot use {file} as the index folder"),
], ids=["int", "bool", "folder is a file"])
def test_cli_bad_configuration_is_one_line(command: str, var: str, value: str, code: int, words: str,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    monkeypatch.setenv(var, value.format(file=file))
    assert cli.main([command, QUESTION if command == "ask" else "--quiet"]) == code
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(words.format(file=file)) and err.count("\n") == 1, err


# -- secrets --------------------------------------------------------------------------------------
def test_api_key_never_reaches_output_logs_or_files(
        settings: Settings, index_dir: Path, first_build: object, tmp_path: Path, cli_env: Callable,
        caplog: pytest.LogCaptureFixture) -> None:
    secret = f"sk-test-SECRET-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with FakeLLMServer("openai") as server:
        url = server.url + "/v1"
        llm = Assistant(settings.with_(backend="openai", openai_base_url=url, llm_max_retries=0,
                                       openai_api_key=secret))
        assert secret not in repr(llm.settings)
        echo = f"Incorrect API key provided: {secret}. You can find your API key at ..."
        for reply in [Reply(status=401, error=echo), Reply(status=500, error=echo), Reply(status=429, error=echo)]:
            server.script(reply)
            with pytest.raises(BackendError) as exc:
                llm.answer(QUESTION)
            assert "[redacted]" in str(exc.value) and exc.value.__cause__ is None
            seen.append(str(exc.value))
        server.script(Reply("ShadowKV keeps a low-rank key cache [1]."))
        seen.append(json.dumps(llm.answer(QUESTION).to_dict()))
        env = cli_env(ASSISTANT_INDEX_DIR=str(index_dir), OPENAI_API_KEY=secret, OPENAI_BASE_URL=url,
                      OPENAI_LOG="debug", HOME=str(tmp_path))
        eval_set = tmp_path / "set.jsonl"
        eval_set.write_text(json.dumps({"id": "q1", "kind": "unanswerable", "question": "What is the capital "
                                        "of Australia?", "gold_titles": [], "answer_keywords": []}) + "\n")
        runs = [(["ask", QUESTION], Reply("ShadowKV keeps a low-rank key cache [1].")),
                (["eval", "--set", str(eval_set), "--out", str(tmp_path / "report"), "--json"], Reply(REFUSAL)),
                (["eval", "--set", str(eval_set), "--out", str(tmp_path / "failed")], Reply(status=401, error=echo))]
        for args, reply in runs:
            server.script(reply)
            done = subprocess.run([sys.executable, "-m", "assistant", *args, "--backend", "openai"],
                                  env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
            seen += [done.stdout, done.stderr]
        assert all(r.headers["authorization"] == f"Bearer {secret}" for r in server.requests)  # it was used
    ask_out, ask_err, _, _, _, eval_err = seen[-6:]
    assert "ShadowKV" in ask_out and "openai._base_client" in ask_err and "HTTP 401" in eval_err
    assert (tmp_path / "report" / "metrics.json").is_file()
    seen.append(caplog.text)
    assert not [s for s in seen if secret in s]
    written = [p for folder in (index_dir, tmp_path) for p in folder.rglob("*") if p.is_file()]
    assert written and not [p for p in written if secret.encode() in p.read_bytes()]


# -- exposure -------------------------------------------------------------------------------------
def test_chat_listens_on_loopback_unless_told(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.build_parser().parse_args(["chat"]).host == "127.0.0.1"
    with pytest.raises(SystemExit) as exc:
        cli.main(["chat", "--help"])
    assert exc.value.code == 0 and "default 127.0.0.1" in capsys.readouterr().out


def test_cli_filter_nothing_matches_is_a_refusal_that_says_so(ask: Callable) -> None:
    code, out, err = ask(QUESTION, "--since", "2031", "--min-upvotes", "1", "--json")
    result = json.loads(out)
    assert (code, err) == (0, "")
    assert result["refused"] and result["citations"] == [] and result["sources"] == []
    assert result["answer"].startswith("No paper matches the filters")
    assert result["filters"]["applied"] == {"since": "2031-01-01", "min_upvotes": 1}
    assert result["filters"]["matching_papers"] == 0


def test_cli_filters_narrow_the_papers_and_say_so(ask: Callable, assistant: Assistant) -> None:
    page = assistant.answer(QUESTION).sources[0].metadata["pages"].split(":")[0]
    code, out, err = ask(QUESTION, "--source", page, "--source", "no-such-file")
    assert code == 0 and err == ""
    note, answer = out.split("\n\n", 1)
    assert note.startswith(f"Searched only papers from files matching '{page}' or 'no-such-file': ")
    assert "ShadowKV" in answer


@pytest.mark.parametrize(("args", "words"), [(["--since", "2024-13"], "since '2024-13' is not a real date"),
                                             (["--until", "May"], "until must be a date like 2024-12-01"),
                                             (["--since", "2025", "--until", "2024"], "after the end of the range")])
def test_cli_bad_filter_exits_2_with_one_line(ask: Callable, args: list[str], words: str) -> None:
    code, out, err = ask(QUESTION, *args)
    assert code == cli.EXIT_BAD_INPUT and out == "" and words in err and err.count("\n") == 1
