#!/usr/bin/env bash
# Build the llama-cpp-python wheel into the wheel cache, once: usage: build-llama-wheel.sh PIP CACHE_DIR PIN
# (PIN as in constraints.txt, e.g. llama_cpp_python==0.3.36). The package is published as source only, and pip
# keeps no wheel it builds from source, so the first set-up on a machine compiles llama.cpp for 5 to 10 minutes;
# this says so and shows the compiler's progress. With the wheel cached it prints nothing and runs no pip at all.
set -euo pipefail

pip=$1
cache=$2
pin=$3
if [[ $pin != *==* ]]; then
    echo "build-llama-wheel.sh: expected a pin such as llama_cpp_python==0.3.36, got '$pin'" >&2
    exit 2
fi
name=${pin%%==*}
version=${pin#*==}
# Wheel file names carry the project name normalised: lower case, runs of "-", "_" and "." as one "_".
wheel_name=$(tr '[:upper:]' '[:lower:]' <<<"$name" | sed -E 's/[-_.]+/_/g')

mkdir -p "$cache"
shopt -s nullglob
cached=("$cache/$wheel_name-$version-"*.whl)
if ((${#cached[@]})); then
    exit 0
fi

cat <<MESSAGE
Building $name $version from source: this happens once per machine and takes 5 to 10 minutes on 2 cores.
  Why: it is published as source only, and its llama.cpp is compiled for this CPU's instruction set.
  The wheel is kept in $cache; later set-ups here, even of a fresh clone, reuse it.
  Preparing the build (source and build tools)...
MESSAGE

log=$(mktemp "${TMPDIR:-/tmp}/llama-wheel-build.XXXXXX.log")
# Progress comes from the build tool's "[step/steps]" lines (ninja; make's "[ 42%]" too), which pip's -v passes
# through as they come; one line per tenth of the build keeps a log without a terminal (CI) readable.
progress() {
    local shown=-1 percent line
    while IFS= read -r line; do
        if [[ $line =~ ^[[:space:]]*\[[[:space:]]*([0-9]+)/([0-9]+)\] ]]; then
            ((BASH_REMATCH[2] > 0)) || continue
            percent=$((100 * BASH_REMATCH[1] / BASH_REMATCH[2]))
        elif [[ $line =~ ^[[:space:]]*\[[[:space:]]*([0-9]+)%\] ]]; then
            percent=${BASH_REMATCH[1]}
        else
            continue
        fi
        if ((percent / 10 > shown)); then
            shown=$((percent / 10))
            printf '  compiling llama.cpp: %3d%% after %dm%02ds\n' "$percent" $((SECONDS / 60)) $((SECONDS % 60))
        fi
    done
}
# --no-cache-dir: pip keeps wheels it built in its own cache, and would hand back one built with other flags.
if ! "$pip" wheel -v --no-cache-dir --no-deps --find-links "$cache" --wheel-dir "$cache" "$pin" 2>&1 | tee "$log" | progress; then
    tail -n 40 "$log" >&2
    echo "Building $name $version failed; the whole build log is $log" >&2
    exit 1
fi
rm -f "$log"
printf 'Built %s %s in %dm%02ds; kept in %s.\n' "$name" "$version" $((SECONDS / 60)) $((SECONDS % 60)) "$cache"
