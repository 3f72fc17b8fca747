"""A cc_binary linked against the static archives of Debian's libraries.

    load("//bazel:static_binary.bzl", "pm_static_cc_binary")
    pm_static_cc_binary(name = "pm", srcs = ["main.cc"], deps = [...])

makes `pm`, an executable built from the cc_binary `pm_dynamic` (the
same attributes) in a configuration where the build setting
//bazel:static_link is true, where
every @system library links its static archives (bazel/system_libs.bzl)
while glibc and libstdc++ stay shared. For a command people type all day:
Debian's gRPC, protobuf and abseil are 60 shared objects whose symbol
lookups at load took most of `pm help`'s 14 ms. Its dependencies are
compiled once more in that configuration. Under a sanitizer (asan, tsan)
the libraries stay shared: its interposers replace their symbols.
"""

def _static_link_setting_impl(ctx):
    return []

# A build setting (not a command-line flag): only the transition below sets
# it. bazel/system_libs.bzl's libraries select on it.
static_link_setting = rule(
    implementation = _static_link_setting_impl,
    build_setting = config.bool(flag = False),
)

def _static_link_transition_impl(settings, attr):
    return {"//bazel:static_link": True}

_static_link_transition = transition(
    implementation = _static_link_transition_impl,
    inputs = [],
    outputs = ["//bazel:static_link"],
)

def _static_binary_impl(ctx):
    binary = ctx.attr.binary[0]
    executable = binary[DefaultInfo].files_to_run.executable
    out = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.symlink(output = out, target_file = executable, is_executable = True)
    runfiles = ctx.runfiles(files = [out]).merge(binary[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = out, files = depset([out]), runfiles = runfiles)]

_static_binary = rule(
    implementation = _static_binary_impl,
    attrs = {
        "binary": attr.label(cfg = _static_link_transition, executable = True, mandatory = True),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
    executable = True,
)

def pm_static_cc_binary(name, visibility = None, **kwargs):
    native.cc_binary(name = name + "_dynamic", visibility = ["//visibility:private"], **kwargs)
    _static_binary(name = name, binary = ":" + name + "_dynamic", visibility = visibility)
