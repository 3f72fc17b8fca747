"""C++ (and Python) code from .proto files with Debian's protoc and gRPC plugins.

Bazel 4.2.3's native proto rules want to download protobuf; these run the
system `protoc` and `grpc_cpp_plugin` instead. Protos live under //proto and
import each other by their path below it ("pm/v1/process_manager.proto").

    load("//bazel:proto.bzl", "pm_cc_grpc_library")
    pm_cc_grpc_library(
        name = "process_manager_cc_grpc",
        srcs = ["process_manager.proto"],
        deps = [],  # other pm_cc_grpc_library targets whose protos are imported
    )
    # C++ code includes "pm/v1/process_manager.grpc.pb.h".

Protos copied from elsewhere keep their own import paths under a root of
their own: `proto_root = "third_party/etcd/proto"` (see //third_party/etcd).
A library's root, and those of its deps, are all on protoc's import path.
"""

PROTO_ROOT = "proto"

PmProtoInfo = provider(
    doc = "The .proto files of a pm_cc_grpc_library and of everything it imports.",
    fields = {
        "transitive_srcs": "depset of .proto Files",
        "transitive_roots": "depset of the directories they import from",
    },
)

def _relative_to_root(f):
    prefix = PROTO_ROOT + "/"
    if not f.short_path.startswith(prefix):
        fail("%s is not under //%s" % (f.short_path, PROTO_ROOT))
    return f.short_path[len(prefix):]

def _pm_proto_gen_impl(ctx):
    transitive = depset(
        ctx.files.srcs,
        transitive = [d[PmProtoInfo].transitive_srcs for d in ctx.attr.deps],
    )
    roots = depset(
        [ctx.attr.proto_root],
        transitive = [d[PmProtoInfo].transitive_roots for d in ctx.attr.deps],
    )
    outputs = []
    for src in ctx.files.srcs:
        base = src.basename[:-len(".proto")]
        for suffix in ctx.attr.suffixes:
            outputs.append(ctx.actions.declare_file(base + suffix, sibling = src))

    # Outputs land under <bin>/<proto_root>/..., mirroring the source tree.
    out_root = ctx.bin_dir.path + "/" + ctx.attr.proto_root
    args = ctx.actions.args()
    args.add_all(roots, format_each = "--proto_path=%s")
    args.add("--proto_path=/usr/include")
    for lang_flag in ctx.attr.out_flags:
        args.add(lang_flag.format(out = out_root))
    args.add_all(ctx.files.srcs)
    ctx.actions.run(
        executable = ctx.attr.protoc,
        arguments = [args],
        inputs = transitive,
        outputs = outputs,
        mnemonic = "PmProtoc",
        progress_message = "protoc %s" % ctx.label,
        use_default_shell_env = True,
    )
    headers = [f for f in outputs if f.extension == "h"]
    sources = [f for f in outputs if f.extension != "h"]
    return [
        # Runfiles too, so a data dependency (Python stubs) lands in them.
        DefaultInfo(files = depset(outputs), runfiles = ctx.runfiles(files = outputs)),
        OutputGroupInfo(headers = depset(headers), sources = depset(sources)),
        PmProtoInfo(transitive_srcs = transitive, transitive_roots = roots),
    ]

_pm_proto_gen = rule(
    implementation = _pm_proto_gen_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".proto"], mandatory = True),
        "deps": attr.label_list(providers = [PmProtoInfo]),
        "suffixes": attr.string_list(mandatory = True),
        "out_flags": attr.string_list(mandatory = True),
        "proto_root": attr.string(default = PROTO_ROOT),
        "protoc": attr.string(default = "/usr/bin/protoc"),
    },
)

def pm_cc_grpc_library(
        name,
        srcs,
        deps = [],
        grpc = True,
        visibility = None,
        proto_root = PROTO_ROOT):
    """A cc_library of the messages (and gRPC stubs) in `srcs`, which import
    each other (and are included) by their path below `proto_root`."""
    suffixes = [".pb.h", ".pb.cc"]
    out_flags = ["--cpp_out={out}"]
    if grpc:
        suffixes += [".grpc.pb.h", ".grpc.pb.cc"]
        out_flags += [
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
            "--grpc_out={out}",
        ]
    _pm_proto_gen(
        name = name + "_gen",
        srcs = srcs,
        deps = [d + "_gen" for d in deps],
        suffixes = suffixes,
        out_flags = out_flags,
        proto_root = proto_root,
    )
    native.filegroup(
        name = name + "_hdrs",
        srcs = [":" + name + "_gen"],
        output_group = "headers",
    )
    native.filegroup(
        name = name + "_srcs",
        srcs = [":" + name + "_gen"],
        output_group = "sources",
    )
    native.cc_library(
        name = name,
        srcs = [":" + name + "_srcs"],
        hdrs = [":" + name + "_hdrs"],
        strip_include_prefix = "/" + proto_root,
        # Generated code is not ours to keep warning-free.
        copts = ["-Wno-error", "-Wno-unused-parameter"],
        deps = deps + ["@system//:grpc++", "@system//:protobuf"],
        visibility = visibility,
    )

def pm_py_grpc_library(name, srcs, deps = [], visibility = None):
    """Python messages and gRPC stubs for `srcs` (for tests with real peers)."""
    _pm_proto_gen(
        name = name,
        srcs = srcs,
        deps = [d + "_gen" if not d.endswith("_py") else d for d in deps],
        suffixes = ["_pb2.py", "_pb2_grpc.py"],
        out_flags = [
            "--python_out={out}",
            "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
            "--grpc_python_out={out}",
        ],
        visibility = visibility,
    )
