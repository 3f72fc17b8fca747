"""libFuzzer harnesses that also build, and replay their seeds, without it.

    load("//bazel:fuzz.bzl", "pm_cc_fuzzer")
    pm_cc_fuzzer(
        name = "basic_auth_fuzzer",   # basic_auth_fuzzer.cc beside it, and
        deps = ["//gateway:gateway_lib"],  # basic_auth_corpus/, the seeds
    )

makes two targets:
  - `basic_auth_fuzzer`, a cc_binary defining LLVMFuzzerTestOneInput. Under
    `--config=fuzz` it links libFuzzer's main (-fsanitize=fuzzer):
    `bazel-bin/gateway/fuzz/basic_auth_fuzzer -max_total_time=60 CORPUS_DIR`.
    In any other config it links //bazel:fuzz_replay_main, which runs the
    inputs named on its command line once each, so `bazel build //...` with
    gcc keeps it compiling.
  - `basic_auth_fuzzer_seeds_test`, a test that runs the binary over its
    seed corpus (libFuzzer with -runs=0 under --config=fuzz, the replay main
    otherwise): every seed, and every crash kept as a regression seed, runs
    in `bazel test //...`.

The binaries are tagged `pm_fuzzer`: testing/fuzz/run_fuzzers.sh finds
them with `bazel query 'attr(tags, pm_fuzzer, //...)'` and fuzzes each for
a bounded time, on a copy of its seeds.

The seed corpus of `X_fuzzer` is the directory `X_corpus/` beside it: a
few hand-made inputs, plus every input that once crashed the harness (kept
as a regression seed once the bug is fixed). One name for it, so the runner
finds it without asking Bazel.
"""

def pm_cc_fuzzer(name, deps = [], srcs = None, visibility = None):
    if not name.endswith("_fuzzer"):
        fail("pm_cc_fuzzer %s: the name must end in _fuzzer" % name)
    corpus = name[:-len("_fuzzer")] + "_corpus"
    if srcs == None:
        srcs = [name + ".cc"]
    native.cc_binary(
        name = name,
        testonly = True,
        srcs = srcs,
        deps = deps + select({
            "//bazel:fuzzing": [],
            "//conditions:default": ["//bazel:fuzz_replay_main"],
        }),
        linkopts = select({
            "//bazel:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        tags = ["pm_fuzzer"],
        visibility = visibility,
    )
    corpus_files = native.glob([corpus + "/**"])
    if not corpus_files:
        fail("pm_cc_fuzzer %s: the seed corpus %s/ is empty" % (name, corpus))
    native.sh_test(
        name = name + "_seeds_test",
        size = "small",
        srcs = ["//bazel:fuzz_seeds_test.sh"],
        args = [
            "$(location :%s)" % name,
            "%s/%s" % (native.package_name(), corpus),
        ],
        data = [":" + name] + corpus_files,
    )
