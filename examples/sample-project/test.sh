#!/bin/sh
# Tests for calc.sh. Exits non-zero when a test fails.
. ./calc.sh
fail=0
check() {
    if [ "$2" != "$3" ]; then
        echo "FAIL: $1: expected $3, got $2"
        fail=1
    else
        echo "ok: $1"
    fi
}
check "add 2 3" "$(add 2 3)" 5
check "mul 4 5" "$(mul 4 5)" 20
exit $fail
