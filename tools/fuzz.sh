#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (fuzz/fuzz_targets): log commits,
# task definitions, label files, image headers, loader states.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the targets once (so that the time goes to fuzzing), replays the
# crashes found before (fuzz/regressions/<target>/, each input once), then
# runs each target (all by default) for SECONDS (default 60) on a copy of
# its committed seed corpus (fuzz/corpus/<target>), with its dictionary
# (fuzz/dict), so that the inputs the fuzzer adds never dirty the
# repository. Exits non-zero when a regression input or the fuzzer makes
# any target crash, hang or run out of memory, after printing the input
# that did it (new ones are kept under fuzz/artifacts/<target>/, which git
# ignores; copy them to fuzz/regressions/<target>/ to keep them).
#
# With FUZZ_NEW_FINDINGS=warn (as CI runs it), a crash that random fuzzing
# finds for the first time is printed but does not fail the run; a
# regression input that crashes again always fails it.
#
# Needs only the stable toolchain (cargo-fuzz's flags are unlocked with
# RUSTC_BOOTSTRAP=1) and installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(commit_json task_json label_file image_header loader_state)
fi
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version > /dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Default build: optimized, with debug assertions, overflow checks and
# AddressSanitizer. `cargo fuzz run` below uses the same flags, so it
# does not rebuild.
start=$SECONDS
cargo fuzz build
echo "fuzz targets built in $((SECONDS - start)) s"

max_len() {
    case "$1" in
        label_file) echo $((1 << 20)) ;;
        *) echo $((64 << 10)) ;;
    esac
}

dict() {
    case "$1" in
        label_file) echo fuzz/dict/parquet.dict ;;
        image_header) echo fuzz/dict/image.dict ;;
        *) echo fuzz/dict/json.dict ;;
    esac
}

# The same limits for replays and fuzzing.
limits=(-rss_limit_mb=2048 -timeout=30)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    reg="fuzz/regressions/$t"
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
        echo "== $t: regressions"
        t0=$SECONDS
        for input in "$reg"/*; do
            rc=0
            cargo fuzz run "$t" "$input" -- "${limits[@]}" -runs=1 > "$work/replay.log" 2>&1 || rc=$?
            if [ "$rc" -ne 0 ]; then
                failed+=("$t:regression")
                echo "!! $t crashes again on $input (exit status $rc):" >&2
                # The panic (or sanitizer/timeout report) and the first frames in this repository.
                grep -m1 -A1 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$work/replay.log" >&2 ||
                    tail -20 "$work/replay.log" >&2
                grep -E "(at \./|$PWD/)(src|fuzz)/[^ ]+\.rs:" "$work/replay.log" | head -4 >&2 || true
            fi
        done
        echo "== $t: regressions replayed in $((SECONDS - t0)) s"
    fi
done
for t in "${targets[@]}"; do
    if [ ! -d "fuzz/corpus/$t" ]; then
        echo "no seed corpus fuzz/corpus/$t" >&2
        exit 2
    fi
    cp -r "fuzz/corpus/$t" "$work/$t"
    mkdir -p "fuzz/artifacts/$t"
    touch "$work/.before-$t"
    echo "== $t: ${secs} s"
    t0=$SECONDS
    rc=0
    cargo fuzz run "$t" "$work/$t" -- "${limits[@]}" \
        -max_total_time="$secs" \
        -max_len="$(max_len "$t")" \
        -dict="$(dict "$t")" \
        -print_final_stats=1 \
        || rc=$?
    echo "== $t: done in $((SECONDS - t0)) s"
    if [ "$rc" -ne 0 ]; then
        echo "!! $t crashed, hung or ran out of memory (see above); input(s):" >&2
        find "fuzz/artifacts/$t" -type f -newer "$work/.before-$t" -printf '   %p\n' >&2
        if [ "${FUZZ_NEW_FINDINGS:-fail}" = warn ]; then
            echo "!! a new finding, reported but not failing this run (FUZZ_NEW_FINDINGS=warn): add it to fuzz/regressions/$t and fix it" >&2
        else
            failed+=("$t")
        fi
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing passed: ${targets[*]} (${secs} s each)"
