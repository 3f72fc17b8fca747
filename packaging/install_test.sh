#!/bin/bash
# The packaging test (install_test.py), with Debian's Python.
exec /usr/bin/python3 "$(dirname "$0")/install_test.py" "$@"
