#!/usr/bin/env bash
# pm_users as a user runs it: the password from stdin or a file, never argv.
set -euo pipefail
pm_users="$TEST_SRCDIR/pm/gateway/pm_users"
dir=$(mktemp -d "${TEST_TMPDIR:-/tmp}/pm_users.XXXXXX")
users="$dir/users"
fail() { echo "FAIL: $*" >&2; exit 1; }

echo 'first secret' | "$pm_users" --users_file="$users" --iterations=1000 add alice
printf 'second secret\n' >"$dir/pw"
"$pm_users" --users_file="$users" --iterations=1000 --password_file="$dir/pw" add bob
[ "$(stat -c %a "$users")" = 600 ] || fail "users file mode is $(stat -c %a "$users")"
grep -q '^alice:pbkdf2-sha256\$1000\$' "$users" || fail "no alice entry: $(cat "$users")"
grep -q '^bob:pbkdf2-sha256\$1000\$' "$users" || fail "no bob entry"
! grep -q secret "$users" || fail "a password is in the file"
! grep -q '^bob:.*:admin$' "$users" || fail "bob is an admin without --admin"
echo 'third secret' | "$pm_users" --users_file="$users" --iterations=1000 --admin add root
grep -q '^root:pbkdf2-sha256\$1000\$.*:admin$' "$users" || fail "root is not an admin: $(cat "$users")"

"$pm_users" --users_file="$users" remove alice
! grep -q '^alice:' "$users" || fail "alice was not removed"
if "$pm_users" --users_file="$users" remove alice 2>"$dir/err"; then fail "removing twice worked"; fi
grep -q 'no user "alice"' "$dir/err" || fail "unexpected error: $(cat "$dir/err")"
if echo x | "$pm_users" --users_file="$users" add 'bad name' 2>"$dir/err"; then
  fail "a bad user name was accepted"
fi
if "$pm_users" --users_file="$users" add carol </dev/null 2>"$dir/err"; then
  fail "an empty password was accepted"
fi
rm -rf "$dir"
echo "1 passed, 0 failed"
