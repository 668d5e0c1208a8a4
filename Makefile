# Ember: event-driven serverless on Kafka, Redis and containerd.
# `make help` lists the targets. Everything that needs root (containerd,
# cgroups, namespaces) assumes you are root, as on the CI machines.

SHELL       := /bin/bash
EMBER_STATE ?= $(CURDIR)/.ember
export EMBER_STATE
GO          ?= go
BIN         := $(CURDIR)/bin
GOFLAGS_STATIC := CGO_ENABLED=0
TEST_TIMEOUT ?= 14m
# A count, not a duration: a duration races Go's fuzz coordinator at its end
# and fails with "context deadline exceeded" on a busy machine (go.dev/issue/75804,
# fixed in Go 1.27).
FUZZTIME    ?= 20000x
# package:target of every fuzz target; `make test` runs each for FUZZTIME.
FUZZ_TARGETS := consumers/kafkaevent:FuzzEncode engine/codestore:FuzzValidate \
	hostagent/initproto:FuzzRead hostagent/initproto:FuzzRoundTrip hostagent/initproto:FuzzWire \
	hostagent/initd:FuzzRuntimeAPI engine/api:FuzzRequestBodies engine/registry:FuzzValidName \
	internal/emberd:FuzzUsageRecordJSON

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: ## Install Debian packages and start a private containerd and Redis (idempotent).
	@deploy/setup.sh start

.PHONY: build
build: ## Build emberd, ember-agent, ember, ember-init and ember-shim (static) into bin/.
	@mkdir -p $(BIN)
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/ember-init ./cmd/ember-init
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/ember-shim ./cmd/ember-shim
	$(GO) build -o $(BIN)/emberd ./cmd/emberd
	$(GO) build -o $(BIN)/ember-agent ./cmd/ember-agent
	$(GO) build -o $(BIN)/ember ./cmd/ember

.PHONY: run
run: setup build ## Set up, start Ember on the embedded defaults, run the demo (1,000 events), print what happened.
	@deploy/demo.sh

.PHONY: stop
stop: ## Stop emberd (if started by `make run`), containerd and Redis.
	@deploy/demo.sh stop || true
	@deploy/setup.sh stop

.PHONY: test-deps
test-deps: ## Install what only the tests need: Chromium (the dashboard in a browser), Prometheus (promtool, a real scrape), the OpenTelemetry Collector (a real log receiver), SeaweedFS (state shared by several hosts) and CRIU (checkpoints of waiting functions); the last three built once, cached.
	@deploy/setup.sh install chromium prometheus
	@deploy/setup.sh otelcol
	@deploy/setup.sh weed
	@deploy/setup.sh criu

.PHONY: test
test: setup test-deps ## Run every test against real Redis, containerd and the Kafka-protocol broker, then each fuzz target briefly.
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 2 ./...
	@$(MAKE) --no-print-directory fuzz

.PHONY: fuzz
fuzz: setup ## Run each fuzz target for FUZZTIME (default 20000x, executions; e.g. make fuzz FUZZTIME=10m). Failures land in testdata/fuzz.
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} $${t##*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*} >$(EMBER_STATE)/fuzz.log 2>&1 || { cat $(EMBER_STATE)/fuzz.log; exit 1; }; \
	done

.PHONY: bench
bench: setup build ## Run the benchmarks and print the figures with the command to reproduce them.
	@deploy/setup.sh install wrk
	@deploy/setup.sh otelcol
	@deploy/setup.sh weed
	@deploy/setup.sh rie
	@deploy/bench.sh

.PHONY: generate
generate: ## Regenerate protobuf and eBPF code (installs protoc, clang, llvm, libbpf-dev and the Go plugins).
	@deploy/setup.sh install protobuf-compiler clang llvm libbpf-dev
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative hostagent/dispatchpb/dispatch.proto
	$(GO) generate ./bpf/...

.PHONY: lint
lint: ## gofmt and go vet.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

.PHONY: clean
clean: stop ## Stop everything and remove bin/ and the state directory.
	rm -rf $(BIN) $(EMBER_STATE)
