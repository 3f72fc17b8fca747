# pm: two commands for a newcomer.
#   make up    installs what is missing, builds, runs the local stack
#   make test  installs what is missing, builds, runs every test
#   make upgrade  rebuilds and restarts the services of a running `make up`
# Everything comes from Debian's archive; the build downloads nothing.

BAZEL ?= bazel
# Debian packages the build and the tests need (see README.md).
DEB_PACKAGES := bazel-bootstrap bazel-platforms bazel-rules-java \
	pkg-config protobuf-compiler protobuf-compiler-grpc libprotobuf-dev \
	libgrpc++-dev libabsl-dev libgtest-dev libgmock-dev libgflags-dev \
	libssl-dev openssl libbenchmark-dev python3-grpcio python3-protobuf \
	sslscan nodejs libsqlite3-dev zlib1g-dev libcli11-dev libsystemd-dev \
	systemd dpkg-dev lintian libmicrohttpd-dev libnghttp2-dev prometheus \
	golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev \
	golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev \
	etcd-server etcd-client iproute2 util-linux
# iproute2 (ip) and util-linux (unshare, nsenter): the three-host test in
# network namespaces of its own (testing/cluster_netns_test).
# Not golang-etcd-server-dev: it pulls golang-github-golang-protobuf-1-3-dev,
# which removes the 1.5 one the Go client needs (third_party/etcd/README.md).
# The sanitizer and fuzzing builds (README, "Sanitizers and fuzzing"):
# clang-14 compiles them; libclang-rt-14-dev holds the ASan, TSan and
# libFuzzer runtimes; lld-14 and lld (its ld.lld) link them; llvm-14 has the
# llvm-symbolizer that puts function names and lines in their reports.
DEB_PACKAGES += clang-14 libclang-rt-14-dev lld-14 lld llvm-14

.PHONY: up upgrade test build deps clean test-sanitizers test-fuzz install deb

# ETCD_TLS_DIR: a directory of certs/make_pki.sh's etcd files (etcd-ca.pem,
# etcd-client.pem/.key): the registry reaches etcd over TLS with them.
up: deps
	$(BAZEL) run //:stack$(if $(ETCD)$(NODE)$(ETCD_TLS_DIR), --)$(if $(ETCD), --etcd=$(ETCD))$(if $(NODE), --node=$(NODE))$(if $(ETCD_TLS_DIR), --etcd_ca_file=$(ETCD_TLS_DIR)/etcd-ca.pem --etcd_cert_file=$(ETCD_TLS_DIR)/etcd-client.pem --etcd_key_file=$(ETCD_TLS_DIR)/etcd-client.key)

# Builds the services and asks the launcher of a running `make up` (found
# through the pid file in the runtime dir) to restart them one at a time on
# the new binaries (README, "The launcher").
upgrade: deps
	$(BAZEL) build //:stack
	$(BAZEL) run //:stack -- --upgrade

test: deps
	$(BAZEL) build //...
	$(BAZEL) test //...
	@$(MAKE) --no-print-directory test-sanitizers test-fuzz

build: deps
	$(BAZEL) build //...

# Installs pm as a system service (README, "Running pm as a system
# service"): the binaries (opt build) under PREFIX, the systemd units, the
# default flag files (an existing one is kept) and the bash completion, all
# under DESTDIR, with PREFIX's paths written into the units.
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc/pm
UNITDIR ?= /lib/systemd/system
INSTALLED := cli/pm gateway/pm_users registry/registry log_store/log_store \
	supervisor/supervisor gateway/gateway shim/pm-shim
install: deps
	$(BAZEL) build -c opt $(foreach t,$(INSTALLED),//$(patsubst %/,%,$(dir $(t))):$(notdir $(t)))
	bash packaging/install.sh "$(DESTDIR)" "$(PREFIX)" "$(SYSCONFDIR)" "$(UNITDIR)" \
		$(foreach t,$(INSTALLED),bazel-bin/$(t)) README.md

# The Debian package, dist/pm_VERSION_ARCH.deb (README, "Running pm as a
# system service"): the same tree for /usr, stripped, with its control
# file, documentation and conffiles; lintian finds no error in it.
VERSION := $(shell sed -n 's/.*kVersion\[\] = "\(.*\)";/\1/p' common/version.h)
deb: deps
	$(BAZEL) build -c opt $(foreach t,$(INSTALLED),//$(patsubst %/,%,$(dir $(t))):$(notdir $(t)))
	bash packaging/make_deb.sh dist $(VERSION) $(foreach t,$(INSTALLED),bazel-bin/$(t)) README.md
	lintian --fail-on error dist/pm_$(VERSION)_$$(dpkg --print-architecture).deb

# Idempotent and quiet when everything is present.
deps:
	@bash bazel/install_deps.sh $(DEB_PACKAGES)
	@bash bazel/install_node_deps.sh

clean:
	$(BAZEL) clean

# The end-to-end tests of the engine (the services as real processes) and of
# the gateway (in process, and the real gateway driven by `pm --gateway`),
# built with clang 14 under AddressSanitizer (+ LeakSanitizer), then the
# engine and the real gateway under ThreadSanitizer: the services they start
# are built the same way. A few targets, not //...: each config compiles
# everything they use once more. Under TSan, the engine test that starts a
# missing program is left out (TSan's interceptors run in the vfork child,
# which shares the supervisor's memory: its failed exec and _exit unsettle
# the parent's TSan state; the same holds in a TSan-built pm-shim, which
# spawns that way when the process gets no cgroup: so the supervisor's
# tests that spawn without one are left out too), and so is the in-process
# gateway test (see README, "Sanitizers and
# fuzzing"); bazel/tsan_annotations_test checks TSan's view of abseil.
# The gateway's CA checks (a refresh thread beside the calls') and the
# one-shot client's HTTP/2 calls. The metrics: their registry updated from many threads, the HTTP server
# (libmicrohttpd's thread calling ours) fed hostile requests, and the whole
# stack scraped while a client works.
METRICS_TESTS := //common:metrics_test //common:metrics_http_test \
	//testing/gateway:metrics_test
ASAN_TESTS := //testing:engine_test //gateway:gateway_test \
	//testing/gateway:cli_test //supervisor:supervisor_test //supervisor:idle_shim_test \
	//supervisor:spares_test //gateway:trusted_cas_test //client:h2_unary_test \
	$(METRICS_TESTS)
TSAN_TESTS := //testing:engine_test //testing/gateway:cli_test \
	//bazel:tsan_annotations_test //supervisor:supervisor_test //supervisor:idle_shim_test \
	//supervisor:spares_test //registry:cluster_test //registry:registry_test \
	//gateway:trusted_cas_test //client:h2_unary_test $(METRICS_TESTS)
TSAN_SKIP := -EngineTest.ProcessThatWontStartGivesTheOsErrorAndNoUuid:SupervisorTest.AStartOutOfFdsIsResourceExhaustedNamingTheLimitAndLeaksNothing:ReadoptionTest.AShimWhoseProcessWasNeverOnRecordHasItKilled
test-sanitizers: deps
	$(BAZEL) test --config=asan $(ASAN_TESTS)
	$(BAZEL) test --config=tsan --test_filter=$(TSAN_SKIP) $(TSAN_TESTS)

# Every libFuzzer harness for FUZZ_SECONDS each, on a copy of its seeds.
FUZZ_SECONDS ?= 20
test-fuzz: deps
	BAZEL=$(BAZEL) bash testing/fuzz/run_fuzzers.sh $(FUZZ_SECONDS)
