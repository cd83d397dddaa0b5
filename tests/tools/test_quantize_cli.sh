#!/usr/bin/env bash
# CTest entry `cli_quantize`: `sharq quantize` against the independent SPEC oracle
# (tests/oracle/check_cli.py). Needs numpy (scripts/setup.sh installs it); fails without it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -c "import numpy" 2>/dev/null || { echo "numpy missing: run scripts/setup.sh" >&2; exit 1; }
python3 "$here/../oracle/spec_ref.py"  # oracle self-test against ml_dtypes
exec python3 "$here/../oracle/check_cli.py"
