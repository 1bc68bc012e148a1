# gipam: build, run, test, benchmark, and package as a Docker managed plugin.
#
#   make install   build the managed plugin and enable it in the local Docker
#                  as $(PLUGIN_NAME):$(TAG)
#   make run       build and run the daemon as a legacy plugin on
#                  /run/docker/plugins/gipam.sock (state in /var/lib/gipam)
#   make test      install/start what the tests need, run the whole suite
#   make bench     print the benchmark figures (see BENCHMARKS.md)
#   make soak      100 kill -9s under load, then lost/duplicate counts
#   make settings  print every setting (gipam --help of the plugin's binary)
#   make help      print this list
#   make install-systemd  the plain daemon: binary, systemd unit, defaults

PLUGIN_NAME ?= org/gipam
TAG         ?= latest
TARGET      ?= x86_64-unknown-linux-musl
CARGO       ?= cargo
BIN          = target/$(TARGET)/release/gipam

.PHONY: all help settings build run test lint bench bench-oha soak plugin plugin-docker create enable disable remove push install install-systemd clean

all: build

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

## gipam --help of target/gipam-static, the binary in the plugin: every
## setting with its environment name, flag and default.
settings: build
	@./target/gipam-static --help

## The statically linked binary that goes into the plugin's rootfs
## (target/gipam-static). musl when the target is (or can be) installed and
## a musl C compiler is there (ring, under etcd-client's TLS, compiles C:
## musl-gcc from musl-tools), else a static glibc build (testing.md:
## verified as the fallback).
build:
	@if { case "$(TARGET)" in *musl*) command -v musl-gcc || command -v x86_64-linux-musl-gcc ;; esac; } >/dev/null && \
	    { rustup target list --installed 2>/dev/null | grep -qx $(TARGET) || rustup target add $(TARGET); }; then \
	    $(CARGO) build --release --locked --target $(TARGET) && \
	    cp $(BIN) target/gipam-static; \
	else \
	    echo "$(TARGET) or musl-gcc (apt-get install musl-tools) is not available; building a static glibc binary instead"; \
	    RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --locked --target x86_64-unknown-linux-gnu && \
	    cp target/x86_64-unknown-linux-gnu/release/gipam target/gipam-static; \
	fi

## Runs the daemon in the foreground (Ctrl-C stops it cleanly).
run:
	$(CARGO) build --release --locked
	./target/release/gipam

## The whole suite, against every Docker engine of scripts/engines.sh (28.5,
## then the docker e2e tests again on 20.10); GIPAM_ENGINES=20.10 (or 28.5)
## runs one. Every test binary runs even when one fails (--no-fail-fast).
## The daemon-restart scenario restarts each dockerd once;
## GIPAM_E2E_RESTART_DOCKERD=0 skips it.
test:
	./scripts/test-env.sh
	./scripts/install-prometheus.sh
	$(MAKE) plugin
	GIPAM_E2E_RESTART_DOCKERD=$${GIPAM_E2E_RESTART_DOCKERD:-1} ./scripts/test-engines.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

bench:
	$(CARGO) bench --locked --bench protocol

## gipam vs a no-op warp server, both driven by oha (cargo install oha).
bench-oha:
	./scripts/oha-bench.sh

## kill -9 at random points under an 8-client storm, SOAK_KILLS times
## (default 100); prints kills, acknowledged operations, lost, duplicates.
soak:
	SOAK_KILLS=$${SOAK_KILLS:-100} $(CARGO) test --release --locked --test crash -- --ignored --nocapture soak

## plugin/: config.json plus a rootfs holding the binary and the socket dir.
plugin: build
	rm -rf plugin/rootfs plugin/config.json
	mkdir -p plugin/rootfs/run/docker/plugins plugin/rootfs/data plugin/rootfs/tmp
	cp target/gipam-static plugin/rootfs/gipam
	cp config.json plugin/config.json

## The same rootfs built by the Dockerfile (needs the rust image from a registry).
plugin-docker:
	rm -rf plugin/rootfs plugin/config.json
	mkdir -p plugin/rootfs
	docker build -t gipam-rootfs .
	c=$$(docker create gipam-rootfs) && docker export $$c | tar -x -C plugin/rootfs && docker rm $$c >/dev/null
	cp config.json plugin/config.json

create: plugin
	docker plugin create $(PLUGIN_NAME):$(TAG) plugin

enable:
	docker plugin enable $(PLUGIN_NAME):$(TAG)

disable:
	docker plugin disable $(PLUGIN_NAME):$(TAG)

remove:
	docker plugin rm -f $(PLUGIN_NAME):$(TAG)

## Pushes the bundle to the registry PLUGIN_NAME names (creating the
## plugin under that name first when it does not exist here).
push: plugin
	@docker plugin inspect $(PLUGIN_NAME):$(TAG) >/dev/null 2>&1 || docker plugin create $(PLUGIN_NAME):$(TAG) plugin
	docker plugin push $(PLUGIN_NAME):$(TAG)

## Builds the plugin and enables it in the local Docker (starting one if
## needed). An existing plugin of that name is kept, with its state: to
## replace its code, see "Upgrade" in the README.
install: plugin
	./scripts/docker-up.sh
	@if docker plugin inspect $(PLUGIN_NAME):$(TAG) >/dev/null 2>&1; then \
	    echo "$(PLUGIN_NAME):$(TAG) is already installed; keeping it and its state"; \
	else \
	    docker plugin create $(PLUGIN_NAME):$(TAG) plugin; \
	fi
	@if [ "$$(docker plugin inspect -f '{{.Enabled}}' $(PLUGIN_NAME):$(TAG))" != true ]; then \
	    docker plugin enable $(PLUGIN_NAME):$(TAG); \
	fi
	@echo "ready: docker network create --ipam-driver $(PLUGIN_NAME):$(TAG) mynet"

## The plain daemon (no managed plugin): $(PREFIX)/bin/gipam, the unit
## in $(UNITDIR) (its ExecStart names that binary), settings in
## $(DEFAULTS) (kept when it exists). SYSTEMD_BIN installs another binary
## (tests use the debug one) instead of building the release one.
PREFIX      ?= /usr/local
UNITDIR     ?= /etc/systemd/system
DEFAULTS    ?= /etc/default/gipam
SYSTEMD_BIN ?= target/release/gipam

install-systemd:
	@if [ "$(SYSTEMD_BIN)" = target/release/gipam ]; then $(CARGO) build --release --locked; fi
	install -D -m 0755 $(SYSTEMD_BIN) $(DESTDIR)$(PREFIX)/bin/gipam
	mkdir -p $(DESTDIR)$(UNITDIR)
	sed 's|^ExecStart=/usr/local/bin/gipam|ExecStart=$(PREFIX)/bin/gipam|' contrib/gipam.service > $(DESTDIR)$(UNITDIR)/gipam.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/gipam.service
	@[ -e $(DESTDIR)$(DEFAULTS) ] || install -D -m 0644 contrib/gipam.default $(DESTDIR)$(DEFAULTS)
	@if [ -z "$(DESTDIR)" ] && [ "$(UNITDIR)" = /etc/systemd/system ] && [ -d /run/systemd/system ]; then \
	    systemctl daemon-reload && echo "installed; start with: systemctl enable --now gipam"; \
	else \
	    echo "installed $(DESTDIR)$(UNITDIR)/gipam.service; run systemctl daemon-reload where systemd runs"; \
	fi

clean:
	$(CARGO) clean
	rm -rf plugin/rootfs plugin/config.json
