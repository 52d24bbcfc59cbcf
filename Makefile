# Vessel build, test and install targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)

OUT        ?= _output
BIN        := $(OUT)/bin
GUEST_DIR  ?= /var/lib/vessel/guest
CACHE_DIR  ?= /var/cache/vessel
# IMAGE_FLAGS are extra `vessel image build` flags, e.g. --debug-console (busybox and /bin/sh
# in the initramfs, for `vessel debug console`; docs/debugging.md).
IMAGE_FLAGS ?=
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/vessel-containers/vessel/internal/version.Version=$(VERSION)
AGENT_TAGS := netgo osusergo seccomp

.DEFAULT_GOAL := build

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n",$$1,$$2}'

.PHONY: build
build: vessel shim agent monitor vesselio vesselnet ## build all binaries into _output/bin

.PHONY: vessel
vessel: ## build the vessel CLI
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vessel ./cmd/vessel

.PHONY: vesselio
vesselio: ## build the static I/O workload that vesselbench's io measure runs in containers
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vesselio ./bench/cmd/vesselio

.PHONY: vesselnet
vesselnet: ## build the static network workload that vesselbench's net measure runs in containers and on the host
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vesselnet ./bench/cmd/vesselnet

.PHONY: monitor
monitor: ## build vessel-monitor, the Prometheus exporter of the host's sandboxes
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vessel-monitor ./cmd/vessel-monitor

.PHONY: shim
shim: ## build the containerd shim v2 (io.containerd.vessel.v2)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/containerd-shim-vessel-v2 ./cmd/containerd-shim-vessel-v2

.PHONY: agent
agent: ## build the static guest agent (cgo for libcontainer's nsenter)
	CGO_ENABLED=1 $(GO) build -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS) -extldflags -static' -o $(BIN)/vessel-agent ./cmd/vessel-agent

.PHONY: image
image: build ## build the guest kernel (cached per machine) and initramfs into GUEST_DIR
	$(BIN)/vessel image build --agent $(BIN)/vessel-agent --output $(GUEST_DIR) --cache-dir $(CACHE_DIR) $(IMAGE_FLAGS)

PREFIX ?= /usr/local

.PHONY: install
install: build ## install vessel, the shim and vessel-monitor into PREFIX/bin (default /usr/local) and the default config
	install -D -m 0755 $(BIN)/vessel $(PREFIX)/bin/vessel
	install -D -m 0755 $(BIN)/vessel-monitor $(PREFIX)/bin/vessel-monitor
	install -D -m 0755 $(BIN)/containerd-shim-vessel-v2 $(PREFIX)/bin/containerd-shim-vessel-v2
	@if [ ! -e /etc/vessel/configuration.toml ]; then \
		install -d /etc/vessel && $(BIN)/vessel env > /etc/vessel/configuration.toml && \
		echo "wrote /etc/vessel/configuration.toml"; fi
	@echo "containerd: add the runtime as shown in docs/containerd.md, then restart containerd"

.PHONY: demo
demo: image ## boot a VM and run a container in it, printing its output
	$(BIN)/vessel run demo-$$$$

.PHONY: proto
proto: ## regenerate api/agent/v1 and api/factory/v1 from their .proto files (needs protoc, protoc-gen-go, protoc-gen-go-ttrpc)
	cd api/agent/v1 && protoc --go_out=. --go_opt=paths=source_relative \
		--go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative agent.proto
	cd api/factory/v1 && protoc --go_out=. --go_opt=paths=source_relative \
		--go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative factory.proto

.PHONY: test
test: ## unit tests: no root, no VM, seconds
	$(GO) test -count=1 ./...

.PHONY: integration
integration: image ## integration tests: boot real VMs (root, QEMU)
	VESSEL_INTEGRATION=1 VESSEL_GUEST_DIR=$(GUEST_DIR) CRICTL_BIN=$(CRICTL_BIN) $(GO) test -count=1 -p 1 -timeout 40m ./...

# FUZZTIME is the time each fuzz target runs: CI passes a shorter one (make fuzz FUZZTIME=30s).
FUZZTIME ?= 1m

.PHONY: fuzz
fuzz: ## run each fuzz target (annotations, config loader, OCI converter, agent requests, agent session frames, QMP client, VM cache server requests, VM cache client answers) for FUZZTIME each (default 1m)
	hack/fuzz.sh $(GO) ./internal/config FuzzParse $(FUZZTIME)
	hack/fuzz.sh $(GO) ./internal/config FuzzAnnotations $(FUZZTIME)
	hack/fuzz.sh $(GO) ./internal/oci FuzzSandboxConfig $(FUZZTIME)
	hack/fuzz.sh $(GO) ./internal/agent FuzzAgentRequest $(FUZZTIME)
	hack/fuzz.sh $(GO) ./internal/agent/session FuzzMux $(FUZZTIME)
	hack/fuzz.sh $(GO) ./internal/hypervisor/qemu/qmp FuzzClient $(FUZZTIME)
	hack/fuzz.sh $(GO) ./internal/factory FuzzServerRequest $(FUZZTIME)
	hack/fuzz.sh $(GO) ./internal/factory FuzzClientResponse $(FUZZTIME)

# The benchmark runs Vessel with the built-in defaults and the guest image in GUEST_DIR,
# never with the host's /etc/vessel/configuration.toml or $VESSEL_CONFIG.
.PHONY: bench
bench: build image ## benchmarks: Vessel vs runc vs the bare-VM floor (results in _output/bench; see docs/benchmarks.md)
	$(GO) run ./bench/cmd/vesselbench -guest-dir $(GUEST_DIR) -out $(OUT)/bench

.PHONY: bench-quick
bench-quick: build image ## benchmark smoke test (1 run each, small counts), run in CI so the harness never rots
	$(GO) run ./bench/cmd/vesselbench -quick -guest-dir $(GUEST_DIR) -out $(OUT)/bench-quick

.PHONY: conformance
conformance: build image ## OCI runtime-tools validation programs, runc's bats tests and containerd's client tests (CONTAINERD_CLIENT=DIR of their sources) against runc and Vessel side by side (tables in _output/conformance; docs/conformance.md)
	$(GO) run ./conformance/cmd/vesselconformance -guest-dir $(GUEST_DIR) -out $(OUT)/conformance -bin $(OUT)/bin -containerd-client '$(CONTAINERD_CLIENT)'

# critest is cri-tools' CRI validation suite, built from the Go module proxy (outside this
# module, so go.mod is untouched). FOCUS and SKIP are ginkgo regular expressions; HANDLERS
# the runtime handlers to run, in order; CONTAINERD the daemon: 1.6 (Debian's) or 2
# (containerd 2.x from hack/install-deps.sh, results in _output/critest/containerd2).
CRITEST_VERSION ?= v1.37.0
CRITEST_BIN     := $(abspath $(OUT))/critest/bin/critest-$(CRITEST_VERSION)
HANDLERS        ?= runc vessel

CRICTL_BIN      := $(abspath $(OUT))/critest/bin/crictl-$(CRITEST_VERSION)
CRI_TOOLS_DIR   = cd / && dir=$$($(GO) mod download -json sigs.k8s.io/cri-tools@$(CRITEST_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && cd $$dir

$(CRITEST_BIN):
	@mkdir -p $(dir $@)
	$(CRI_TOOLS_DIR) && CGO_ENABLED=0 $(GO) test -c -o $@ ./cmd/critest

$(CRICTL_BIN):
	@mkdir -p $(dir $@)
	$(CRI_TOOLS_DIR) && CGO_ENABLED=0 $(GO) build -o $@ ./cmd/crictl

# The installer's integration test asks containerd's CRI plugin through crictl.
integration: $(CRICTL_BIN)

.PHONY: critest
critest: build $(CRITEST_BIN) $(CRICTL_BIN) ## CRI validation suite (critest) via a private containerd, handlers runc then vessel (FOCUS=, SKIP=, HANDLERS=, CONTAINERD=1.6|2; results in _output/critest; docs/kubernetes.md), and a pod's VM sized through CRI
	VESSEL_INTEGRATION=1 VESSEL_CRITEST=1 VESSEL_GUEST_DIR=$(GUEST_DIR) CRITEST_BIN=$(CRITEST_BIN) CRICTL_BIN=$(CRICTL_BIN) \
		CRITEST_OUT=$(abspath $(OUT))/critest CRITEST_FOCUS='$(FOCUS)' CRITEST_SKIP='$(SKIP)' CRITEST_HANDLERS='$(HANDLERS)' CRITEST_CONTAINERD='$(CONTAINERD)' \
		$(GO) test -count=1 -p 1 -timeout 6h -v -run '^(TestCritest|TestPodSizing)$$' ./internal/critest

# critest-ci is critest as CI runs it (check-all), against containerd 1.6 and then 2.x with
# both handlers: the specs CRITEST_CI_FOCUS matches, which are those critest tags
# [Conformance] plus every spec conformance/critest-exceptions.txt lists (host namespaces,
# mounts, port forwarding): 68 of critest's 142 specs, 12 minutes against containerd 1.6
# and 6.5 against 2.x on 2 shared cores under TCG, where critest-full, every spec, takes 20
# and 12 (docs/kubernetes.md, "In CI, and the full run"). Each version's run fails on
# a spec Vessel does worse on than runc that the exceptions list does not explain, and on
# a listed spec Vessel passes; the second version runs even when the first fails.
CRITEST_CI_FOCUS ?= \[Conformance\]|NamespaceOption|Container Mount|portforward

.PHONY: critest-ci
critest-ci: image ## critest as CI runs it: the [Conformance] specs and the listed exceptions, runc and vessel, containerd 1.6 then 2.x (docs/kubernetes.md)
	@rc=0; for v in 1.6 2; do \
		echo "critest-ci: containerd $$v, focus $(CRITEST_CI_FOCUS)"; \
		$(MAKE) --no-print-directory critest CONTAINERD=$$v FOCUS='$(CRITEST_CI_FOCUS)' || rc=1; \
	done; exit $$rc

.PHONY: critest-full
critest-full: image ## every critest spec, runc and vessel, containerd 1.6 then 2.x (the results in docs/kubernetes.md)
	@rc=0; for v in 1.6 2; do \
		echo "critest-full: containerd $$v"; \
		$(MAKE) --no-print-directory critest CONTAINERD=$$v FOCUS= || rc=1; \
	done; exit $$rc

.PHONY: pod-overhead
pod-overhead: build $(CRICTL_BIN) ## measure an idle Vessel pod's host memory and CPU through CRI (for the RuntimeClass overhead; _output/critest/overhead.txt)
	VESSEL_INTEGRATION=1 VESSEL_CRITEST=1 VESSEL_GUEST_DIR=$(GUEST_DIR) CRICTL_BIN=$(CRICTL_BIN) \
		CRITEST_OUT=$(abspath $(OUT))/critest $(GO) test -count=1 -p 1 -timeout 20m -v -run '^TestPodOverhead$$' ./internal/critest

.PHONY: install-test
install-test: $(CRICTL_BIN) ## vessel install/uninstall against a private containerd 1.6 and 2.x: the CRI plugin lists the handler, uninstall restores the config byte for byte
	VESSEL_INTEGRATION=1 CRICTL_BIN=$(CRICTL_BIN) $(GO) test -count=1 -v -run '^TestInstallContainerd$$' ./internal/cli

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint with the repo's config
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	golangci-lint run ./...

.PHONY: check-all
check-all: lint test fuzz integration bench-quick critest-ci ## everything CI runs: lint, unit tests, fuzzing, integration tests, benchmark smoke test, CRI validation (critest) with containerd 1.6 and 2.x

.PHONY: clean
clean: ## remove build output
	rm -rf $(OUT)
