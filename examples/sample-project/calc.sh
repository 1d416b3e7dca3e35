#!/bin/sh
# A tiny calculator library used by the Paid demo.

add() {
    echo $(( $1 - $2 ))
}

mul() {
    echo $(( $1 * $2 ))
}
