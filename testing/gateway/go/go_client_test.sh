#!/usr/bin/env bash
# pm's Go client (client/go) through the real gateway, run by
# gateway_harness (see BUILD.bazel: go_client_test). Bazel 4.2.3 has no Go
# rules here, so this runs Debian's toolchain itself, offline: it lays out a
# GOPATH with the client and stubs generated from the proto now
# (client/go/make_gopath.sh), checks gofmt and go vet, builds the example
# program and runs `go test` on the client's unit tests and on the use
# cases (gateway_client_test.go). Nothing is downloaded: GOPATH mode, with
# gRPC and protobuf from Debian's golang-*-dev packages in /usr/share/gocode.
set -euo pipefail

root="$TEST_SRCDIR/pm"
work="$TEST_TMPDIR/go"
export GO111MODULE=off GOPROXY=off GOFLAGS= GOENV=off CGO_ENABLED=0
export GOPATH="$work/gopath:/usr/share/gocode"
export GOCACHE="$work/cache" HOME="$work/home" TMPDIR="$TEST_TMPDIR"
mkdir -p "$work/home" "$work/bin"

bash "$root/client/go/make_gopath.sh" "$work/gopath" "$PM_PROTO_DIR"
tests="$work/gopath/src/pm.example/gatewaytest"
mkdir -p "$tests"
cp -L "$root/testing/gateway/go/"*.go "$tests/"

unformatted=$("$(go env GOROOT)/bin/gofmt" -l "$work/gopath/src/pm.example/client"/*.go \
  "$work/gopath/src/pm.example/client/example" "$tests")
if [ -n "$unformatted" ]; then
  echo "go_client_test: not gofmt'd:" $unformatted >&2
  exit 1
fi
go vet pm.example/client/... pm.example/gatewaytest

go build -o "$work/bin/example" pm.example/client/example
export PM_GO_EXAMPLE="$work/bin/example"
# -p 1: the use cases count failed logins against one certificate; one
# package at a time keeps the output in order.
go test -p 1 -count=1 -v -timeout 10m pm.example/client pm.example/gatewaytest
