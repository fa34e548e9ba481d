#!/usr/bin/env bash
# Runs the libFuzzer targets for SECONDS each (default 60), all of them or
# the ones named, each with its dictionary, starting from the checked-in
# seeds (fuzz/corpus/<target>/) and the fixed crashes (fuzz/regressions/).
# New interesting inputs go to fuzz/corpus-run/<target>/ (not checked in),
# crashes to fuzz/artifacts/<target>/. Needs cargo-fuzz
# (`cargo install cargo-fuzz --locked`) and a nightly toolchain, or else
# the stable one with RUSTC_BOOTSTRAP=1 (set here when `cargo +nightly`
# is not installed; cargo-fuzz only needs nightly's -Z flags).
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Env: CARGO (default cargo); FUZZ_STABLE=1 uses the stable toolchain
# with RUSTC_BOOTSTRAP=1 even when nightly is installed; FUZZ_JOBS=N runs N workers per target (their
# output then goes to fuzz-<n>.log files).
# Exit status 1 when any target found a crash; the summary names them.
set -uo pipefail
cd "$(dirname "$0")" || exit 2
here=$PWD
CARGO=${CARGO:-cargo}
seconds=${1:-60}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' Cargo.toml | grep -v '^swarmbridge-fuzz$')
fi

dict_of() {
    case "$1" in
        ws_frame | catalog_args) echo json ;;
        mcp_request) echo mcp ;;
        a2a_request) echo a2a ;;
        discord_interaction) echo discord ;;
        twitch_command) echo twitch ;;
        twitch_irc) echo irc ;;
        reason_sse | reason_json) echo sse ;;
        *) echo json ;;
    esac
}

toolchain=(+nightly)
if [ -n "${FUZZ_STABLE:-}" ] || ! "$CARGO" +nightly --version >/dev/null 2>&1; then
    toolchain=()
    export RUSTC_BOOTSTRAP=1
    echo "building with the stable toolchain and RUSTC_BOOTSTRAP=1"
fi

# No sanitizer: the project is safe Rust, and without ASan each target
# runs several times faster; debug assertions (overflow checks) stay on.
"$CARGO" "${toolchain[@]}" fuzz build -s none || exit 2

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus-run/$t" "regressions/$t"
    printf '\n==> %s for %ss\n' "$t" "$seconds"
    jobs=()
    [ -n "${FUZZ_JOBS:-}" ] && jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
    if ! "$CARGO" "${toolchain[@]}" fuzz run -s none "$t" \
        "$here/corpus-run/$t" "$here/corpus/$t" "$here/regressions/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -dict="$here/dict/$(dict_of "$t").dict" -print_final_stats=1 "${jobs[@]}"; then
        failed+=("$t")
    fi
done

printf '\n==> summary\n'
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "no crashes in ${targets[*]}"
