# pm: two commands for a newcomer.
#   make up    installs what is missing, builds, runs the local stack
#   make test  installs what is missing, builds, runs every test
# Everything comes from Debian's archive; the build downloads nothing.

BAZEL ?= bazel
# Debian packages the build and the tests need (see README.md).
DEB_PACKAGES := bazel-bootstrap bazel-platforms bazel-rules-java \
	pkg-config protobuf-compiler protobuf-compiler-grpc libprotobuf-dev \
	libgrpc++-dev libabsl-dev libgtest-dev libgmock-dev libgflags-dev \
	libssl-dev openssl libbenchmark-dev python3-grpcio python3-protobuf \
	sslscan nodejs

.PHONY: up test build deps clean

up: deps
	$(BAZEL) run //:stack

test: deps
	$(BAZEL) build //...
	$(BAZEL) test //...

build: deps
	$(BAZEL) build //...

# Idempotent and quiet when everything is present.
deps:
	@bash bazel/install_deps.sh $(DEB_PACKAGES)
	@bash bazel/install_node_deps.sh

clean:
	$(BAZEL) clean
