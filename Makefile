# The two commands of the README, and what they need. Each target installs what it uses
# into .venv on first run: the tested torch first (a CPU build here, the CUDA build of the
# same version on a GPU box), then llmkit and its dev tools.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DEMO ?= demo
DEMO_STEPS ?= 300

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

# The main job on the built-in sample data: scaffold a project, train its tokenizer, train
# a tiny model briefly, and say where the TensorBoard logs are.
demo: install
	$(BIN)/llmkit new $(DEMO) --force
	cd $(DEMO) && ../$(BIN)/llmkit train --max-steps $(DEMO_STEPS)
	@echo
	@echo "TensorBoard logs: $(DEMO)/runs   (open with: $(BIN)/tensorboard --logdir $(DEMO)/runs)"

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/prepare.py
	$(BIN)/python benchmarks/lens_monitor.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
