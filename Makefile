# Ferry — one Go workspace, several modules. `go test ./...` does not work at a
# workspace root, so every target loops over the modules listed by go.work.

SHELL      := /bin/bash
GO         ?= go
MODULES    := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null)
BIN        := $(CURDIR)/bin
CMDS       := services/ingest/cmd/ferry-ingest services/healthpredict/cmd/ferry-healthpredict \
              services/placement/cmd/ferry-placement services/notifier/cmd/ferry-notifier \
              clients/publisher/cmd/ferry-publish clients/ferryctl/cmd/ferryctl
TEST_FLAGS ?= -race -count=1 -timeout 20m
# --version prints the VCS commit from the build info; builds without it
# (GOFLAGS=-buildvcs=false in CI, a tree without .git) get it from here.
COMMIT     := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS    := $(if $(COMMIT),-X github.com/ferrystream/ferry/libs/cli.commit=$(COMMIT))
BENCH_OUT  := $(CURDIR)/bench/results

.PHONY: help build test test-short demo dev bench scale lint fmt tidy images up down test-compose ensure-ffmpeg clean

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## static binaries into bin/
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		if [ -d $$c ]; then \
			echo "build $$(basename $$c)"; \
			CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./$$c || exit 1; \
		else echo "skip $$c (not present)"; fi; \
	done

ensure-ffmpeg: ## install ffmpeg (Debian package) when missing; the interop tests need it
	@bash scripts/ensure-ffmpeg.sh

test: ensure-ffmpeg ## every module's tests, with -race
	@fail=0; for m in $(MODULES); do \
		echo "=== $${m#$(CURDIR)/}"; \
		(cd $$m && $(GO) test $(TEST_FLAGS) ./...) || fail=1; \
	done; exit $$fail

test-short: ## quick tests (-short) of every module
	@fail=0; for m in $(MODULES); do (cd $$m && $(GO) test -short -count=1 ./...) || fail=1; done; exit $$fail

demo: build ## run the whole chain locally and move a stream with zero frames lost
	$(BIN)/ferryctl demo

dev: build ## the local stack (embedded NATS, 3 origins, 1 edge, every service) until Ctrl-C
	$(BIN)/ferryctl dev

bench: build ## every module's benchmarks; a report under bench/results/
	@bash scripts/bench.sh

scale: build ## fleet-scale simulation of the control plane (SCALE_FLAGS="-hosts 100 -streams 10000"); not part of make test
	cd test && $(GO) run ./scale -bin $(BIN) $(SCALE_FLAGS)

lint: ## gofmt, go vet, go mod tidy -diff, and a GOWORK=off build of every module
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	@fail=0; for m in $(MODULES); do \
		(cd $$m && $(GO) vet ./... && GOWORK=off $(GO) mod tidy -diff && GOWORK=off $(GO) build ./...) || { echo "lint failed in $$m"; fail=1; }; \
	done; exit $$fail

tidy: ## go mod tidy in every module
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod tidy) || exit 1; done

images: build ## FROM-scratch images of every binary and of nats-server
	@bash scripts/images.sh

up: images ## the compose stack: 3-node NATS cluster, 3 origins, 1 edge, 2 replicas of each service
	@bash scripts/compose-up.sh

down: ## stop the compose stack and remove its volumes
	@bash scripts/compose-down.sh

test-compose: images ## fault tests against the compose stack (needs Docker)
	@bash scripts/compose-test.sh

clean:
	rm -rf $(BIN)
