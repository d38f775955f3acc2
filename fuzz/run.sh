#!/usr/bin/env bash
# Runs every fuzz target for a bounded time; fails if any of them crashes.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 s each; config lxd_response names)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz when it is missing. Builds in fuzz/target, never in the main
# workspace's target folder. The committed seeds (fuzz/corpus/TARGET/seed-*)
# are read; what the fuzzer finds goes to fuzz/target/corpus/TARGET and is
# reused by the next run. A crash leaves its input in fuzz/artifacts/TARGET/
# (reproduce with `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/FILE`).
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config lxd_response names)
case $secs in '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

toolchain=${FUZZ_TOOLCHAIN:-nightly}
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: needs the $toolchain toolchain: rustup toolchain install $toolchain" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# A target folder exported for the main workspace must not take the fuzz build.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR

cargo "+$toolchain" fuzz build
mkdir -p target/logs
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t" "corpus/$t"
    echo "== fuzzing $t for $secs s"
    set +e
    cargo "+$toolchain" fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -dict="dict/$t.dict" 2>&1 | tee "target/logs/$t.log" |
        grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|ERROR|panicked|SUMMARY|Test unit written'
    status=${PIPESTATUS[0]}
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "target/logs/$t.log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "target/logs/$t.log" | tail -1)
    cov=$(grep -oE '^#[0-9]+[[:space:]]+DONE[[:space:]]+cov: [0-9]+ ft: [0-9]+' "target/logs/$t.log" | tail -1 | sed 's/.*DONE[[:space:]]*//' || true)
    summary+=("$t: ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-no final stats}, exit $status")
    [ "$status" -eq 0 ] || failed+=("$t")
done

echo "== summary (logs in fuzz/target/logs/)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: crashed or failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
