# Set-up and everyday commands. `make demo` and `make test` install into .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEMO_STORE := data/synthetic.zarr

.PHONY: install demo test lint clean-demo

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

demo: install
	$(VENV)/bin/nowcast-prep synthetic --dst $(DEMO_STORE) --events 96 --seed 0 --workers 2 --skip-if-complete
	$(VENV)/bin/nowcast fit --config configs/demo.yaml
	$(VENV)/bin/nowcast test --config configs/demo.yaml --ckpt_path last
	$(VENV)/bin/nowcast test --config configs/demo_persistence.yaml
	$(PY) -m nowcast_pl.summary runs/demo runs/demo-persistence

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf $(DEMO_STORE) runs/demo runs/demo-persistence
