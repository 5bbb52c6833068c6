#!/usr/bin/env bash
# Creates target/interop-venv with DuckDB and pyarrow from PyPI, when missing, and prints the
# venv's python path. Used by the interop tests (tests/parquet.rs) and `make test`; a no-op when
# the venv already imports both.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${TRAIL_INTEROP_VENV:-$root/target/interop-venv}
python=$venv/bin/python
if ! "$python" -c 'import duckdb, pyarrow.dataset' >/dev/null 2>&1; then
	python3 -m venv "$venv" >&2
	"$python" -m pip install --quiet --disable-pip-version-check duckdb pyarrow >&2
	"$python" -c 'import duckdb, pyarrow.dataset' >&2
fi
echo "$python"
