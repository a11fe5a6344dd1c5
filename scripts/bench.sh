#!/usr/bin/env bash
# Runs every module's benchmarks once and writes bench/results/report.txt (the
# raw output, including figures the benchmarks print) and report.json (every
# Benchmark line's metrics, b.ReportMetric figures included).
set -uo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
txt="$out/report.txt"
json="$out/report.json"
: >"$txt"
fail=0
for m in $(go list -m -f '{{.Dir}}'); do
	rel=${m#"$PWD"/}
	echo "=== $rel" | tee -a "$txt"
	(cd "$m" && go test -run '^$' -bench . -benchtime "${BENCHTIME:-1x}" -timeout 30m ./... 2>&1) | tee -a "$txt" || fail=1
done
awk -v date="$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
BEGIN { printf "{\"date\":\"%s\",\"benchmarks\":[", date; n = 0 }
/^=== / { mod = $2 }
/^pkg: / { pkg = $2 }
/^Benchmark/ && NF >= 4 {
	if (n++) printf ","
	printf "{\"module\":\"%s\",\"pkg\":\"%s\",\"name\":\"%s\",\"iterations\":%s,\"metrics\":{", mod, pkg, $1, $2
	m = 0
	for (i = 3; i + 1 <= NF; i += 2) { if (m++) printf ","; printf "\"%s\":%s", $(i+1), $i }
	printf "}}"
}
END { print "]}" }' "$txt" >"$json"
echo "bench: wrote $txt and $json"
exit $fail
