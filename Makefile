# ghostbridge: `make` lists the targets.

SHELL        := /bin/bash
.DEFAULT_GOAL := help

GO          ?= go
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      := $(DESTDIR)$(PREFIX)/bin
MANDIR      := $(DESTDIR)$(PREFIX)/share/man/man1
BASHCOMPDIR := $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  := $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHCOMPDIR := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Passed through so CI can make real-component tests fail instead of skip.
export GHOSTBRIDGE_TEST_STRICT

.PHONY: help build test deps demo bench docs lint check install clean

help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/ghostbridge with the version and commit linked in
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ghostbridge ./cmd/ghostbridge

test: deps ## Run every test (real BTRFS and SQLite; strict when GHOSTBRIDGE_TEST_STRICT=1)
	$(GO) test -count=1 -timeout 15m ./...

deps: ## Install what the tests need (btrfs-progs, sqlite3, Open vSwitch, ...) with apt-get when missing (root only)
	@bash testdata/ci/deps.sh

demo: build ## Snapshot a scratch BTRFS for ten seconds and show the chain (root)
	bash testdata/demo.sh

bench: deps ## Benchmarks, with each figure beside its baseline from the same run (root)
	bash testdata/bench/bench.sh

docs: ## Regenerate man/ and completions/ from the command tree
	$(GO) run ./cmd/ghostbridge gen-docs --dir .

lint: ## gofmt, go vet and staticcheck
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

check: lint test ## lint, then test

install: build ## Install the binary, man pages and completions under $(PREFIX)
	install -d $(BINDIR) $(MANDIR) $(BASHCOMPDIR) $(ZSHCOMPDIR) $(FISHCOMPDIR)
	install -m 0755 bin/ghostbridge $(BINDIR)/ghostbridge
	install -m 0644 man/*.1 $(MANDIR)/
	install -m 0644 completions/ghostbridge.bash $(BASHCOMPDIR)/ghostbridge
	install -m 0644 completions/_ghostbridge $(ZSHCOMPDIR)/_ghostbridge
	install -m 0644 completions/ghostbridge.fish $(FISHCOMPDIR)/ghostbridge.fish

clean: ## Remove bin/
	rm -rf bin
