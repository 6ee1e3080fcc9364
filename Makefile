# sonatarun: `make demo` and `make test` set everything up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
NPROC ?= $(shell nproc 2>/dev/null || echo 1)
DEMO ?= examples/bio_network/config.simulation.json
PYTEST_ARGS ?=

.PHONY: setup demo test image clean help

help:
	@echo "make demo   set up .venv and run the flagship example on all $(NPROC) local cores"
	@echo "make test   set up .venv and run the whole test suite"
	@echo "make image  start Docker (Debian's docker.io) and build the sonatarun image"

$(VENV)/.installed: pyproject.toml launchers/setup-host.sh
	bash launchers/setup-host.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[mpich,test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	@rm -rf output/demo
	$(VENV)/bin/sonatarun launch $(DEMO) --np $(NPROC) -- --output-dir output/demo
	$(VENV)/bin/sonatarun summary output/demo
	$(VENV)/bin/sonatarun plot output/demo

test: setup
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

image:
	bash .ci/setup-docker.sh
	DOCKER_BUILDKIT=1 /usr/bin/docker build --network host -t sonatarun:latest .

clean:
	rm -rf $(VENV) output build *.egg-info
