#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs the receive-path fuzz target for a bounded time: passes when it
# found nothing (no crash, hang, leak or sanitizer report).
set -eu
fuzzer=@FUZZER@
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
# Malformed messages are logged by the receiver; keep only the summary.
"$fuzzer" -max_total_time=@SECONDS@ -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$corpus/" "$corpus" 2>"$corpus.log" || {
    tail -40 "$corpus.log"
    for crash in "$corpus"/crash-* "$corpus"/leak-* "$corpus"/timeout-*; do
        [ -f "$crash" ] && { echo "input:"; od -An -tx1 "$crash" | head -20; }
    done
    rm -f "$corpus.log"
    exit 1
}
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus.log")
cov=$(grep -o 'cov: [0-9]*' "$corpus.log" | tail -1)
echo "ok: fuzz_receive ran $runs inputs in @SECONDS@ s ($cov edges), found nothing"
rm -f "$corpus.log"
