#!/usr/bin/env bash
# Label writing, must-ds (Rust) against pyarrow, on the same arrays, in one
# run: the criterion bench, then the pyarrow script, twice, alternating, so
# that both see the same machine state. Prints rows/s per kind.
set -euo pipefail
cd "$(dirname "$0")/../.."
for round in 1 2; do
  echo "== round $round: must-ds"
  cargo bench --bench write -- label_write 2>/dev/null |
    awk '/^label_write\//{name=$1} /thrpt:/{print name, $4, $5}'
  echo "== round $round: pyarrow"
  python3 tools/bench/bench_label_write.py --repeat 7 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); [print(k, v["rows_per_s"], "rows/s", v["bytes"], "bytes") for k,v in d.items() if isinstance(v, dict)]'
done
