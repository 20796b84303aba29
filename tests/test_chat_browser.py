"""The chat in a real browser: headless Chromium (Debian package) driven by Playwright.

`make test` installs chromium when it is missing (Makefile target `browser`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import bibtexparser
import pytest
from fake_llm_servers import FakeLLMServer, Reply
from playwright.sync_api import Browser, Page, sync_playwright

from assistant import Assistant, Settings
from assistant.indexing.build import IndexReport
from assistant.indexing.index import PaperIndex

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update"]
SHADOWKV = "How does ShadowKV cut KV-cache memory?"
ANSWERED = ".pa-answer, .pa-refusal, .pa-error"
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, chat_url: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(chat_url)
    page.wait_for_selector('textarea[data-testid="textbox"]')
    yield page
    page.close()


def ask(page: Page, question: str) -> None:
    """Type a question, press Enter and wait until its final bubble (answer, refusal or error) is shown."""
    done = page.locator(ANSWERED).count()
    box = page.locator('textarea[data-testid="textbox"]')
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(f"document.querySelectorAll({json.dumps(ANSWERED)}).length > {done}",
                           timeout=TIMEOUT_MS)


def record_bubble_states(page: Page) -> None:
    """Remember every kind of bot bubble shown from now on (pending, streaming, answer...)."""
    page.evaluate("""() => {
        window.__seen = new Set();
        new MutationObserver(() => document.querySelectorAll('.pa-msg').forEach(
            el => el.classList.forEach(c => window.__seen.add(c)))
        ).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")


def test_answer_streams_and_cited_titles_appear_in_sources(page: Page, assistant: Assistant) -> None:
    record_bubble_states(page)
    ask(page, SHADOWKV)
    seen = set(page.evaluate("[...window.__seen]"))
    assert "pa-pending" in seen and "pa-answer" in seen  # the bubble updated while the answer was made
    bot = page.locator('[data-testid="bot"]').last
    cited_in_answer = bot.locator(".pa-refs li").all_inner_texts()
    cited_in_panel = page.locator("#pa-sources .pa-cited .pa-title").all_inner_texts()
    expected = [c.title for c in sorted(assistant.answer(SHADOWKV).citations, key=lambda c: c.n)]
    assert expected and cited_in_panel == expected
    assert [t.split("] ", 1)[1] for t in cited_in_answer] == expected
    assert any("ShadowKV" in t for t in expected)
    # each marker in the answer names its paper on hover, and the panel shows the evidence with it
    assert bot.locator(".pa-cite").first.get_attribute("title") == expected[0]
    card = page.locator("#pa-sources .pa-cited").first
    assert card.locator(".pa-evidence mark").count() >= 1
    assert "score" in card.locator(".pa-details").inner_text()


def test_unanswerable_question_is_refused(page: Page) -> None:
    ask(page, "What is the boiling point of ethanol?")
    bot = page.locator('[data-testid="bot"]').last
    assert bot.locator(".pa-refusal").count() == 1
    assert "doesn't answer" in bot.inner_text()
    assert bot.locator(".pa-cite").count() == 0
    assert "No paper answers" in page.locator("#pa-sources").inner_text()


def test_follow_up_new_chat_example_and_top_k(page: Page) -> None:
    ask(page, SHADOWKV)
    ask(page, "How much does it boost throughput?")
    follow_up = page.locator('[data-testid="bot"]').last
    assert "About [1] ShadowKV" in follow_up.inner_text()
    assert "asked as “How much does ShadowKV boost throughput?”" in follow_up.inner_text()
    assert page.locator("#pa-sources .pa-cited").count() == 1
    assert "ShadowKV" in page.locator("#pa-sources .pa-cited").first.inner_text()

    page.click("#pa-new-chat")
    page.wait_for_function("document.querySelectorAll('[data-testid=\"bot\"]').length === 0")
    assert page.locator("#pa-sources .pa-src").count() == 0

    top_k = page.locator('input[type="number"]').first
    top_k.fill("3")
    top_k.press("Enter")
    page.get_by_text("What throughput boost does NanoFlow get").click()  # an example card
    page.wait_for_selector(".pa-answer", timeout=TIMEOUT_MS)
    assert "asked as" not in page.locator('[data-testid="bot"]').last.inner_text()  # history was cleared
    assert "of 3 retrieved" in page.locator("#pa-sources").inner_text()
    assert "NanoFlow" in page.locator("#pa-sources .pa-cited .pa-title").first.inner_text()


def test_which_of_them_is_answered_about_the_previous_papers(page: Page) -> None:
    ask(page, "Which papers compress the KV cache?")
    ask(page, "and which of them works without retraining?")
    follow_up = page.locator('[data-testid="bot"]').last.inner_text()
    assert "About the 5 papers of the previous answer" in follow_up
    assert "MiniCache is training-free" in follow_up
    assert "MiniCache" in page.locator("#pa-sources .pa-cited .pa-title").first.inner_text()


def test_bad_question_shows_an_error_then_the_chat_answers(page: Page) -> None:
    ask(page, "?!")
    assert "check the question" in page.locator(".pa-error").last.inner_text()
    ask(page, SHADOWKV)
    assert page.locator(".pa-answer").count() == 1


def download(page: Page, button: str) -> str:
    """Click a download button and return the downloaded file's text."""
    with page.expect_download(timeout=30_000) as info:
        page.click(button)
    path = info.value.path()
    assert info.value.suggested_filename in ("answer.md", "references.bib")
    return Path(path).read_text(encoding="utf-8")


def test_answer_and_references_download_as_markdown_and_bibtex(page: Page, assistant: Assistant) -> None:
    markdown, bibtex = "#pa-download-markdown", "#pa-download-bibtex"
    assert not page.locator(markdown).is_visible() and not page.locator(bibtex).is_visible()
    ask(page, SHADOWKV)
    page.wait_for_selector(bibtex, state="visible", timeout=30_000)
    expected = assistant.answer(SHADOWKV)
    assert download(page, markdown) == expected.to_markdown()
    downloaded = download(page, bibtex)
    assert downloaded == expected.to_bibtex()
    library = bibtexparser.parse_string(downloaded)
    assert not library.failed_blocks and len(library.entries) == len(expected.citations) >= 1

    ask(page, "What is the boiling point of ethanol?")  # a refusal: its sentence, but no references
    page.wait_for_selector(bibtex, state="hidden", timeout=30_000)
    assert "The collection doesn't answer this." in download(page, markdown)
    page.click("#pa-new-chat")  # a new chat has nothing to download
    page.wait_for_selector(markdown, state="hidden", timeout=30_000)
    ask(page, "?!")  # an error (a new chat, so not read as a follow-up): nothing to download
    assert page.locator(".pa-error").count() == 1
    page.wait_for_timeout(1000)
    assert not page.locator(markdown).is_visible() and not page.locator(bibtex).is_visible()


def test_mobile_layout_stacks_without_horizontal_scroll(browser: Browser, chat_url: str) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(chat_url)
    page.wait_for_selector('textarea[data-testid="textbox"]')
    ask(page, SHADOWKV)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    ask(page, "where is the code for shadowkv")  # the answer quotes a long link: it wraps
    assert "github.com/bytedance/ShadowKV" in page.locator(ANSWERED).last.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    chat_box = page.locator("#pa-chat").bounding_box()
    sources_box = page.locator("#pa-sources").bounding_box()
    assert chat_box and sources_box and sources_box["y"] >= chat_box["y"] + chat_box["height"]
    page.close()


HOSTILE_QUESTION = "What accuracy does QuokkaNet reach on the Wombat benchmark?"
HOSTILE_PAPER = {
    "title": ('QuokkaNet<script>window.__pwned = 1</script>: Marsupial Attention '
              '<img src=x onerror="window.__pwned = 2">'),
    "abstract": ("We present QuokkaNet, a marsupial attention model for pouch-shaped sequences. On the Wombat "
                 "benchmark QuokkaNet reaches 97.3% accuracy <script>window.__pwned = 3</script> with "
                 '<img src=x onerror="window.__pwned = 4"> only 12M parameters. Code: '
                 'https://example.org/quokka"><script>window.__pwned = 5</script>.'),
    "authors": '<img src=x onerror="window.__pwned = 6">Eve Mallory',
}


@pytest.fixture(scope="module")
def hostile_assistant(index_dir: Path, first_build: IndexReport, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    """The session index plus one paper whose title, abstract and authors carry markup."""
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(index_dir, folder / "index")
    (folder / "hostile.jsonl").write_text(json.dumps(HOSTILE_PAPER) + "\n", encoding="utf-8")
    settings = Settings.from_env(env={}, index_dir=folder / "index")
    PaperIndex(settings).build([folder / "hostile.jsonl"], progress=False)
    return Assistant(settings)


def test_markup_in_abstracts_and_answers_is_inert(browser: Browser, hostile_assistant: Assistant,
                                                  running_chat: Callable) -> None:
    with running_chat(hostile_assistant) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_selector('textarea[data-testid="textbox"]')
        ask(page, HOSTILE_QUESTION)
        page.wait_for_timeout(500)  # give any injected handler (img onerror) the chance to fire
        assert page.evaluate("window.__pwned") is None and dialogs == []
        for where in ('[data-testid="bot"]', "#pa-sources"):
            area = page.locator(where).last
            assert area.locator("script, img, svg[onload], [onerror]").count() == 0
            assert "<script>window.__pwned = " in area.inner_text()  # shown as text
        assert "QuokkaNet" in page.locator("#pa-sources .pa-cited .pa-title").first.inner_text()
        page.close()


def test_ungrounded_llm_answer_is_shown_as_unverified(browser: Browser, assistant: Assistant,
                                                      running_chat: Callable, llm_settings: Callable) -> None:
    """What Qwen2.5-Coder-0.5B really answered (issue 14): '4', citing nothing."""
    with FakeLLMServer("openai") as server:
        server.script(Reply("4"))
        llm = assistant.with_settings(assistant.settings.with_(**llm_settings("openai", server.url)))
        with running_chat(llm, ["openai"]) as url:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector('textarea[data-testid="textbox"]')
            ask(page, "How many annotators labelled the data in the Medusa paper?")
            bubble = page.locator(".pa-answer").last
            assert "pa-unverified" in (bubble.get_attribute("class") or "")
            assert "Unverified: no cited paper backs this text" in bubble.inner_text()
            assert "the answer cites no source" in bubble.inner_text()
            page.close()


UPLOADED = {"title": "QuokkaFormer: Pouch Attention for Marsupial Sequences",
            "abstract": "We present QuokkaFormer, a pouch attention model for marsupial sequences. On the Wombat "
                        "benchmark QuokkaFormer reaches 91.2% accuracy with only 7M parameters.",
            "published": "2025-02-03"}
UPLOADED_QUESTION = "What accuracy does QuokkaFormer reach on the Wombat benchmark?"
UPLOAD_DONE = ".pa-upload-done, .pa-upload-failed"


@pytest.fixture
def own_index_chat(browser: Browser, index_dir: Path, first_build: IndexReport, tmp_path: Path,
                   running_chat: Callable) -> Iterator[tuple[Page, Assistant]]:
    """A page on a chat over a copy of the session index (uploads change it), with upload statuses recorded."""
    shutil.copytree(index_dir, tmp_path / "index")
    bot = Assistant(Settings.from_env(env={}, index_dir=tmp_path / "index"))
    with running_chat(bot) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector('textarea[data-testid="textbox"]')
        page.evaluate("""() => {
            window.__statuses = [];
            new MutationObserver(() => document.querySelectorAll('#pa-upload-status .pa-upload').forEach(
                el => window.__statuses.push(el.className + ' ' + el.innerText))
            ).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        yield page, bot
        page.close()


def upload(page: Page, path: Path) -> str:
    """Choose a file with the 'Add papers' button; wait for the final status and return its text."""
    done = page.locator(UPLOAD_DONE).count()
    page.set_input_files('input[type="file"]', str(path))
    page.wait_for_function(f"document.querySelectorAll({json.dumps(UPLOAD_DONE)}).length > {done}",
                           timeout=TIMEOUT_MS)
    return page.locator("#pa-upload-status").inner_text()


def test_uploaded_papers_are_indexed_with_progress_and_answered(own_index_chat: tuple[Page, Assistant],
                                                                 tmp_path: Path) -> None:
    page, bot = own_index_chat
    file = tmp_path / "my papers.jsonl"
    file.write_text(json.dumps(UPLOADED) + "\n{not json\n", encoding="utf-8")
    status = upload(page, file)
    assert "Added 1 paper(s) from my papers.jsonl" in status and "1 skipped" in status
    page.locator(".pa-skipped summary").click()
    assert "line 2: invalid JSON" in page.locator(".pa-skipped").inner_text()
    shown = " ".join(page.evaluate("window.__statuses"))
    assert "pa-upload-working" in shown and "Indexing 1 paper(s)" in shown  # progress was visible
    assert (bot.settings.uploads_folder / "my_papers.jsonl").exists()
    ask(page, UPLOADED_QUESTION)
    bot_bubble = page.locator('[data-testid="bot"]').last
    assert UPLOADED["title"] in bot_bubble.locator(".pa-refs").inner_text()
    assert "91.2%" in bot_bubble.inner_text()
    assert UPLOADED["title"] in page.locator("#pa-sources .pa-cited .pa-title").first.inner_text()


def test_a_bad_file_is_refused_and_the_chat_keeps_working(own_index_chat: tuple[Page, Assistant],
                                                          tmp_path: Path) -> None:
    page, bot = own_index_chat
    file = tmp_path / "broken.jsonl"
    file.write_text("{not json\n[1, 2]\n", encoding="utf-8")
    status = upload(page, file)
    assert page.locator(".pa-upload-failed").count() == 1
    assert "broken.jsonl holds no paper that can be read (line 1: invalid JSON" in status
    assert "line 2: not a JSON object" in status and "nothing was added" in status
    assert not bot.settings.uploads_folder.exists() or not any(bot.settings.uploads_folder.iterdir())
    ask(page, SHADOWKV)
    assert page.locator(".pa-answer").count() == 1


def test_filters_narrow_the_papers_and_a_filter_nothing_matches_says_so(page: Page) -> None:
    page.get_by_text("Filters", exact=True).click()
    since = page.locator("#pa-since input")
    since.fill("2031-01-01")
    since.press("Enter")
    ask(page, SHADOWKV)
    bot = page.locator('[data-testid="bot"]').last
    assert bot.locator(".pa-refusal").count() == 1 and bot.locator(".pa-cite").count() == 0
    assert "No paper matches the filters" in bot.inner_text() and "published since 2031-01-01" in bot.inner_text()
    since.fill("")
    since.press("Enter")
    upvotes = page.locator("#pa-min-upvotes input")
    upvotes.fill("2")
    upvotes.press("Enter")
    ask(page, "Which papers speed up LLM inference?")
    note = page.locator('[data-testid="bot"]').last.locator(".pa-filter")
    assert "Searched only papers with at least 2 upvotes: 10 of 333 papers match." in note.inner_text()
