# Two commands do all the set-up on a fresh machine:
#   make train   runs the default experiment (mlp on digits), creating .venv on first use
#   make test    runs the test suite, creating .venv on first use
# Extra Hydra overrides: make train ARGS="model=perceptron data=iris"
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch this machine has; on a GPU machine pip gets the normal (CUDA) wheel.
TORCH ?= torch==2.13.0

# setuptools too: tests/test_packaging.py builds Zoo's wheel without build isolation, and a venv of
# Python 3.12+ comes without it.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

.PHONY: install train test list ui
install: $(VENV)/.installed

train: $(VENV)/.installed
	$(VENV)/bin/zoo train $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/pytest $(PYTEST_ARGS)

list: $(VENV)/.installed
	$(VENV)/bin/zoo list

ui: $(VENV)/.installed
	$(VENV)/bin/zoo ui $(ARGS)
