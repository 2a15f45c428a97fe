# Set-up and everyday commands. `make demo` and `make test` install into .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEMO_STORE := data/synthetic.zarr
DEMO_REPORT := runs/demo-report
DEMO_MEMBERS := 8

.PHONY: install demo demo-diffusion test lint clean-demo

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

# The demo trains on the synthetic store, then `nowcast report` scores the model against the baselines on the
# held-out test events, writes the report (table, curves, GIFs) into $(DEMO_REPORT), prints one comparison
# line per baseline and fails when the model does not beat persistence on both CSI and CRPS.
demo: install
	$(VENV)/bin/nowcast-prep synthetic --dst $(DEMO_STORE) --events 96 --seed 0 --workers 2 --skip-if-complete
	$(VENV)/bin/nowcast fit --config configs/demo.yaml
	$(VENV)/bin/nowcast report --config configs/demo.yaml --output $(DEMO_REPORT) --members $(DEMO_MEMBERS) \
		--source simvp=runs/demo --source persistence=configs/demo_persistence.yaml \
		--source extrapolation=configs/baselines/extrapolation.yaml \
		--candidate simvp --require-beat persistence
	@echo "tensorboard    $(VENV)/bin/tensorboard --logdir runs"

# The same with the diffusion model as the candidate: a tiny RainDiff (configs/demo_raindiff.yaml) trained after
# SimVP, its 4-member ensemble scored against persistence, extrapolation and SimVP.
demo-diffusion: install
	$(VENV)/bin/nowcast-prep synthetic --dst $(DEMO_STORE) --events 96 --seed 0 --workers 2 --skip-if-complete
	$(VENV)/bin/nowcast fit --config configs/demo.yaml
	$(VENV)/bin/nowcast fit --config configs/demo_raindiff.yaml
	$(VENV)/bin/nowcast report --config configs/demo.yaml --output $(DEMO_REPORT)-diffusion --members 4 \
		--source raindiff=runs/demo-raindiff --source persistence=configs/demo_persistence.yaml \
		--source extrapolation=configs/baselines/extrapolation.yaml --source simvp=runs/demo \
		--candidate raindiff --require-beat persistence
	@echo "tensorboard    $(VENV)/bin/tensorboard --logdir runs"

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf $(DEMO_STORE) runs/demo runs/demo-raindiff runs/demo-persistence $(DEMO_REPORT) $(DEMO_REPORT)-diffusion
