#!/usr/bin/env bash
# Bazel's --workspace_status_command (.bazelrc): the commit pm is built
# from, for every binary's --version (//common:version). A STABLE_ key: a
# new commit rebuilds the version stamp and relinks; nothing else.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null) || commit=unknown
if [ "$commit" != unknown ] &&
   [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi
echo "STABLE_PM_COMMIT $commit"
