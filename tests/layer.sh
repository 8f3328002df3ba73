#!/usr/bin/env bash
# Prints the layer a test or fuzz source needs to link (the Makefile's
# LINK_*): SERVER when it includes a server/ header or a fuzz target (which
# may), LOST when it includes a header of lost/ (include/<name>.h for a
# lost/<name>.c), else CORE.
f=$1
dir=$(cd "$(dirname "$0")/.." && pwd)
if grep -qE '#include "(\.\./)*(server/|fuzz/fuzz_)' "$f"; then
    echo SERVER
    exit 0
fi
lost=$(for c in "$dir"/lost/*.c; do n=$(basename "$c" .c); [ -f "$dir/include/$n.h" ] && printf '%s|' "$n"; done)
if [ -n "$lost" ] && grep -qE "#include \"(${lost%|})\\.h\"" "$f"; then
    echo LOST
else
    echo CORE
fi
