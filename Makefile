# trail: build, test and run. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build and the tests need (checked one by one, installed when missing).
DEB_PACKAGES := clang llvm libelf-dev zlib1g-dev pkg-config libpcap-dev make \
	tcpdump tshark nftables bpftool iproute2 iputils-ping jq python3 python3-venv time

.PHONY: all deps build release test test-unit test-kernel test-vm lint run schemas bench bench-capture bench-select compat clean

all: build

# Installs what is missing; a no-op on a machine that has everything.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }

build: deps
	$(CARGO) build --all-targets

release: deps
	$(CARGO) build --release

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# DuckDB and pyarrow (interop tests) come from PyPI into target/interop-venv, once.
test-unit: build
	tests/interop/setup.sh >/dev/null
	$(CARGO) test --lib --test tests

# Kernel tests need root, BPF and network namespaces. Under CI=true they must run (the test
# binary fails rather than skips when it lacks privileges).
test-kernel: build
	$(CARGO) test --test kernel -- --test-threads=1

# Kernel function probes (kprobe, fentry...) need kernel features the CI kernel lacks: boot the
# stock Debian 6.1 and 6.12 kernels once each under QEMU (software emulation, virtme-ng) and run
# the kernel tests inside. Kernels are cached in ~/.cache/trail/vm; see tests/vm/run.sh.
# Emulation makes each test ~10x slower: the lane runs the tests that depend on the kernel
# version (capture, function probes, filters in every program kind); the rest (journeys, the
# verifier corpus, meta filters...) run on the host kernel. VM_TESTS= (empty) runs them all.
VM_TESTS ?= capture:: kprobes:: select::filters_apply_to_function_probes select::filter_keeps_what_tcpdump_keeps
test-vm: build
	tests/vm/run.sh $(VM_TESTS)

# Under CI=true the VM lane is part of the test run.
test: lint test-unit test-kernel $(if $(filter true,$(CI)),test-vm)

# The main job: live capture with the default probes, shown as text. ARGS passes options, e.g.
# make run ARGS="-p tp:skb:kfree_skb --count 20"
run: release
	@[ "$$(id -u)" = 0 ] || { echo "make run needs root (BPF): sudo make run"; exit 1; }
	@# trail-print ignores Ctrl-C so that it shows every event capture flushes while stopping.
	./target/release/trail-capture $(ARGS) | (trap '' INT; exec ./target/release/trail-print)

# Regenerates schemas/event.schema.json from the Rust types.
schemas:
	UPDATE_SCHEMAS=1 $(CARGO) test --test tests json_schema_is_current

# Every stage against cat and its peer (jq, GNU sort, tcpdump, DuckDB), 1M and 10M events, the
# capture under a UDP flood (root), and cargo bench; writes bench/results.md (under 15 min).
bench: release
	bench/run.sh

# The capture rows alone (root).
bench-capture: release
	bench/capture.sh

# Per-hit cost of in-kernel filters (root).
bench-select: release
	bench/select.sh

# Behaviour check for refactors: every tool of BASE (a git revision, default main) and of this
# tree, release builds, on the same inputs (fixtures, synthetic streams, broken streams); stdout,
# stderr, exit status and output files must be byte-identical (tests/compat/run.sh, 1-2 min; one
# line per differing case). BASE is built in a git worktree under target/compat/ (removed
# afterwards, also on failure) with its own CARGO_TARGET_DIR, target/compat-target, kept so that
# the next run reuses its dependencies; an empty [workspace] table is added to its Cargo.toml
# there if it has none, keeping it out of this tree's workspace should this tree be one. BASE=HEAD
# checks uncommitted changes.
BASE ?= main
compat: release
	$(CARGO) build --release --example synth
	@set -euo pipefail; \
	rev=$$(git rev-parse --verify --quiet '$(BASE)^{commit}') || { echo "compat: no such revision: $(BASE)"; exit 2; }; \
	wt=target/compat/base; \
	cleanup() { git worktree remove --force "$$wt" 2>/dev/null || rm -rf "$$wt"; git worktree prune; }; \
	cleanup; trap cleanup EXIT; trap 'exit 130' INT TERM HUP; \
	mkdir -p target/compat; \
	git worktree add --detach --quiet "$$wt" "$$rev"; \
	echo "compat: building $(BASE) ($$(git rev-parse --short $$rev)) in $$wt"; \
	grep -q '^\[workspace\]' "$$wt/Cargo.toml" || printf '\n[workspace]\n' >> "$$wt/Cargo.toml"; \
	CARGO_TARGET_DIR=$$PWD/target/compat-target $(CARGO) build --release --workspace --bins --manifest-path "$$wt/Cargo.toml"; \
	cleanup; \
	SYNTH=target/release/examples/synth tests/compat/run.sh target/compat-target/release target/release target/compat/work

clean:
	$(CARGO) clean
