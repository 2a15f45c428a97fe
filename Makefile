# Set-up and everyday commands. `make demo` and `make test` install into .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEMO_STORE := data/synthetic.zarr
DEMO_REPORT := runs/demo-report
DEMO_MEMBERS := 8

.PHONY: install demo test lint clean-demo

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

# The demo makes the synthetic store, trains the demo's SimVP (configs/demo.yaml) and a tiny RainDiff
# (configs/demo_raindiff.yaml), distils that RainDiff from 32 to 4 U-Net calls per segment
# (configs/distill/demo_raindiff.yaml) (run again, `--ckpt_path last` resumes an interrupted fit and keeps a
# finished one), then `nowcast report` scores RainDiff's $(DEMO_MEMBERS)-member ensemble against its distilled
# student, persistence, pysteps extrapolation and SimVP on the held-out test events, writes the report (table,
# curves, GIFs) into $(DEMO_REPORT), prints one line per source (sampler, seconds per forecast, CRPS with its
# interval) and one comparison line per other source, and fails when RainDiff does not beat persistence on both
# CSI and CRPS.
demo: install
	$(VENV)/bin/nowcast-prep synthetic --dst $(DEMO_STORE) --events 96 --seed 0 --workers 2 --skip-if-complete
	$(VENV)/bin/nowcast fit --config configs/demo.yaml --ckpt_path last
	$(VENV)/bin/nowcast fit --config configs/demo_raindiff.yaml --ckpt_path last
	$(VENV)/bin/nowcast fit --config configs/demo_raindiff.yaml --config configs/distill/demo_raindiff.yaml \
		--ckpt_path last
	$(VENV)/bin/nowcast report --config configs/demo.yaml --output $(DEMO_REPORT) --members $(DEMO_MEMBERS) \
		--source raindiff=runs/demo-raindiff --source raindiff-student=runs/demo-raindiff-student \
		--source persistence=configs/demo_persistence.yaml \
		--source extrapolation=configs/baselines/extrapolation.yaml --source simvp=runs/demo \
		--candidate raindiff --require-beat persistence
	@echo "tensorboard    $(VENV)/bin/tensorboard --logdir runs"

# Single-process tests on 2 xdist workers (one torch thread each, tests/conftest.py), whole files per worker so a
# module's fixtures are built once; then the tests marked `multiprocess` (DDP, SLURM, concurrent fits), which use
# both cores themselves, and `timing` (kills at measured moments): one at a time on one worker, while the SLURM
# test, which mostly waits, runs on the other (xdist groups set in tests/conftest.py). Either part failing fails
# `make test`.
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not (multiprocess or timing)"
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "multiprocess or timing"

lint: install
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf $(DEMO_STORE) $(DEMO_STORE).report.json runs/demo runs/demo-raindiff runs/demo-raindiff-student runs/demo-persistence runs/demo-extrapolation $(DEMO_REPORT)
