#!/usr/bin/env bash
# Lays out a GOPATH holding pm's Go client and the stubs it needs, generated
# from the proto by Debian's protoc, protoc-gen-go and protoc-gen-go-grpc (so
# they never go stale; nothing generated is checked in):
#
#   client/go/make_gopath.sh OUT [PROTO_DIR]
#   GO111MODULE=off GOPATH="$PWD/OUT:/usr/share/gocode" go build pm.example/client/...
#
#   OUT/src/pm.example/client/           this directory's .go files (package client)
#   OUT/src/pm.example/client/example/   the example program
#   OUT/src/pm.example/client/pmv1/      process_manager{,_grpc}.pb.go (package pmv1)
#
# PROTO_DIR is the root the protos import each other from (default: the
# repo's proto/). Everything else (gRPC, protobuf, x/net, genproto) comes
# from Debian's golang-*-dev packages in /usr/share/gocode: nothing is
# downloaded. OUT's old client files are replaced.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUT [PROTO_DIR]" >&2
  exit 2
fi
here=$(dirname "$0")
out=$1
proto_dir=${2:-$here/../../proto}
pkg=$out/src/pm.example/client

missing() {
  echo "make_gopath.sh: $1 is missing: install the Debian package $2 (make deps)" >&2
  exit 1
}
gocode=/usr/share/gocode/src
[ -x /usr/bin/protoc-gen-go ] || missing /usr/bin/protoc-gen-go protoc-gen-go
[ -x /usr/bin/protoc-gen-go-grpc ] || missing /usr/bin/protoc-gen-go-grpc protoc-gen-go-grpc
[ -d "$gocode/google.golang.org/grpc" ] || missing google.golang.org/grpc golang-google-grpc-dev
[ -d "$gocode/google.golang.org/protobuf" ] || missing google.golang.org/protobuf golang-google-protobuf-dev
# golang-google-grpc-dev is content with github.com/golang/protobuf 1.3
# (golang-github-golang-protobuf-1-3-dev), whose codec panics on messages
# that protoc-gen-go 1.28 generates; 1.5 marshals them through the new API.
grep -q ProtoPackageIsVersion4 "$gocode/github.com/golang/protobuf/proto/"*.go 2>/dev/null ||
  missing "github.com/golang/protobuf 1.4 or later" golang-github-golang-protobuf-1-5-dev

rm -rf "$pkg"
mkdir -p "$pkg/example" "$pkg/pmv1"
# -L: under Bazel the sources are symlinks into the work tree.
cp -L "$here"/*.go "$pkg/"
cp -L "$here"/example/*.go "$pkg/example/"

# The proto has no go_package (it is shared with C++, Python and Node):
# M maps it to the Go package here.
mapping="Mpm/v1/process_manager.proto=pm.example/client/pmv1;pmv1"
/usr/bin/protoc \
  --proto_path="$proto_dir" --proto_path=/usr/include \
  --plugin=protoc-gen-go=/usr/bin/protoc-gen-go \
  --plugin=protoc-gen-go-grpc=/usr/bin/protoc-gen-go-grpc \
  --go_out="$out/src" --go_opt="$mapping" \
  --go-grpc_out="$out/src" --go-grpc_opt="$mapping" \
  pm/v1/process_manager.proto
