# hookbridge — run `make help` for the targets.
GO        ?= go
PKG       ?= ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin
FUZZTIME  ?= 60s
BENCHCOUNT ?= 6
STATICCHECK_VERSION := v0.8.2
IMAGE     ?= hookbridge
BROKER    ?= kafka

.DEFAULT_GOAL := help
.PHONY: help run build test test-short bench bench-e2e fuzz lint fmt tidy send tail docker up down clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z0-9-]+:.*## /{printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## run the bridge on an embedded NATS JetStream (dev secret, ./data)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/hookbridge serve --dev

build: ## build bin/hookbridge (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/hookbridge ./cmd/hookbridge

test: ## everything: vet, unit, fuzz seeds, integration against real brokers (race detector on)
	$(GO) vet $(PKG)
	$(GO) test -race -count=1 -timeout 12m $(PKG)
	$(GO) test -count=1 -run 'Alloc' ./ingest/ ./schema/   # allocation counts: -race adds its own
	cd deploy && $(GO) test -count=1 ./...

test-short: ## unit tests only (no broker processes)
	$(GO) test -short -count=1 $(PKG)

bench: ## micro-benchmarks (verifier, parser, headers, handler, dedup, publish)
	$(GO) test -run='^$$' -bench=. -benchmem -count=$(BENCHCOUNT) $(PKG)

bench-e2e: ## end-to-end: hookbridge (dedup nats/memory/off) vs a minimal baseline on nats-server and kfake; medians (BEFORE=bin: also an earlier build)
	$(GO) run ./integration/benche2e -duration 10s -runs 5 -conns 64 $(if $(BEFORE),-before $(BEFORE))

fuzz: ## run each fuzz target for FUZZTIME (default 60s)
	$(GO) test -run='^$$' -fuzz='^FuzzVerifyDifferential$$' -fuzztime=$(FUZZTIME) ./ingest
	$(GO) test -run='^$$' -fuzz='^FuzzVerify$$' -fuzztime=$(FUZZTIME) ./ingest
	$(GO) test -run='^$$' -fuzz='^FuzzCandidates$$' -fuzztime=$(FUZZTIME) ./ingest
	$(GO) test -run='^$$' -fuzz='^FuzzHandler$$' -fuzztime=$(FUZZTIME) ./ingest
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./schema
	$(GO) test -run='^$$' -fuzz='^FuzzValidJSON$$' -fuzztime=$(FUZZTIME) ./schema
	$(GO) test -run='^$$' -fuzz='^FuzzObjectID$$' -fuzztime=$(FUZZTIME) ./schema
	$(GO) test -run='^$$' -fuzz='^FuzzParseAck$$' -fuzztime=$(FUZZTIME) ./publish

lint: $(BIN)/staticcheck ## go vet + staticcheck (installed from the Go module proxy), both modules
	$(GO) vet $(PKG)
	$(BIN)/staticcheck $(PKG)
	cd deploy && $(GO) vet ./... && $(abspath $(BIN))/staticcheck ./...

$(BIN)/staticcheck:
	GOBIN=$(abspath $(BIN)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

tidy: ## go mod tidy (both modules), failing if it changed anything
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd deploy && $(GO) mod tidy && git diff --exit-code go.mod go.sum

send: ## sign and POST one sample of every event type to the local bridge
	$(GO) run ./cmd/hookbridge send --all

tail: ## print events as they arrive on the local bridge's stream
	$(GO) run ./cmd/hookbridge tail

docker: ## build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

up: ## docker compose up: NATS, Kafka, Redis and hookbridge on BROKER=kafka (default) or nats; then make send / make tail (needs a Docker engine)
	@mkdir -p data
	@umask 077; if [ -n "$$HOOKBRIDGE_SECRETS" ]; then printf '%s\n' "$$HOOKBRIDGE_SECRETS" > data/compose-secret; \
	  elif [ ! -s data/compose-secret ]; then $(GO) run ./cmd/hookbridge secret new > data/compose-secret; fi
	HOOKBRIDGE_SECRETS="$$(cat data/compose-secret)" HOOKBRIDGE_BROKER=$(BROKER) \
	  HOOKBRIDGE_DEDUP=$(if $(filter nats,$(BROKER)),nats,redis) docker compose up -d --build --wait
	@printf '{"webhook_url": "http://127.0.0.1:8080/webhooks/openai", "admin_url": "http://127.0.0.1:9090", %s, "secret_file": "data/compose-secret"}\n' \
	  '$(if $(filter nats,$(BROKER)),"nats_url": "nats://127.0.0.1:4222","kafka_brokers": "localhost:9092")' > data/dev.json
	@echo "up: hookbridge on $(BROKER); make send, make tail, make down (data/dev.json tells them where)"

down: ## docker compose down, removing volumes
	docker compose down -v
	rm -f data/dev.json

clean: ## remove build output and the local data dir
	rm -rf $(BIN) data
