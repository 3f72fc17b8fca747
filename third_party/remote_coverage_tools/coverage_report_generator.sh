#!/bin/sh
echo "pm: bazel coverage is not available offline: remote_coverage_tools is a local stand-in (see WORKSPACE)" >&2
exit 1
