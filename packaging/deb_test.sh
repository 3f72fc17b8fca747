#!/bin/bash
# The Debian package's test (deb_test.py), with Debian's Python.
exec /usr/bin/python3 "$(dirname "$0")/deb_test.py" "$@"
