#!/usr/bin/env bash
# CTest entry `ab_summary`: bench/e2e/ab_summary.py on hand-made `sharq bench --json` files (two
# modes, two batches, three variants, two rounds): the medians, ranges and changes against base it
# must print, a file that is not bench JSON reported and skipped, and no rows at all an error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
summary="$here/../../bench/e2e/ab_summary.py"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
# bench JSON with one mode row per "mode:b1_tok_s:b8_tok_s" argument
write() {
  local file=$1
  shift
  {
    echo '{"results": ['
    local first=1
    for spec in "$@"; do
      IFS=: read -r mode t1 t8 <<<"$spec"
      [ $first = 1 ] || echo ','
      first=0
      echo "{\"mode\": \"$mode\", \"decode\": [{\"batch\": 1, \"ctx\": 1024, \"tokens_per_s\": $t1},"
      echo " {\"batch\": 8, \"ctx\": 1024, \"tokens_per_s\": $t8}]}"
    done
    echo ']}'
  } >"$dir/$file"
}
write abbase_base_1.json bf16:200:1000 sharq-nvfp4-24:400:1800
write abbase_base_2.json bf16:202:1010 sharq-nvfp4-24:404:1790
write abbase_new_1.json bf16:201:1000 sharq-nvfp4-24:420:1800
write abbase_new_2.json bf16:203:1000 sharq-nvfp4-24:424:1800
write abbase_SHARQ_X_0_1.json bf16:100:1000 sharq-nvfp4-24:402:1795
write abbase_SHARQ_X_0_2.json bf16:300:1000 sharq-nvfp4-24:402:1795
echo 'not json' >"$dir/abbase_broken_1.json"

out="$(python3 "$summary" "$dir"/abbase_*.json 2>"$dir/err")"
echo "$out"
expect() {  # a line of the output matching all of the given patterns, in order
  local pat=".*$(printf '%s.*' "$@")"
  grep -Eq "$pat" <<<"$out" || { echo "missing: $*" >&2; exit 1; }
}
# sharq-nvfp4-24 batch 1: base median 402, new 422 (+4.98%), X 402 (+0.00%)
expect 'sharq-nvfp4-24 +1 +1024 +base +402\.0 +400\.0-404\.0 +\(2 rounds\)'
expect 'sharq-nvfp4-24 +1 +1024 +new +422\.0 +420\.0-424\.0 +\+4\.98%'
expect 'sharq-nvfp4-24 +1 +1024 +SHARQ_X_0 +402\.0 +402\.0-402\.0 +\+0\.00%'
# bf16 batch 1: the switched run's median 200 against base 201 (-0.50%), range 100-300
expect 'bf16 +1 +1024 +SHARQ_X_0 +200\.0 +100\.0-300\.0 +-0\.50%'
# batch 8 rows too; base first, then new, then the switch
expect 'sharq-nvfp4-24 +8 +1024 +base +1795\.0'
[ "$(grep -c '^sharq-nvfp4-24 ' <<<"$out")" = 6 ] || { echo "expected 6 sharq rows" >&2; exit 1; }
first=$(grep -m1 '^bf16 ' <<<"$out" | awk '{print $4}')
[ "$first" = base ] || { echo "base not listed first: $first" >&2; exit 1; }
grep -q 'abbase_broken_1.json: unreadable bench JSON' "$dir/err" || { echo "broken file not reported" >&2; exit 1; }
# --reference: changes against another variant
# (output captured first: grep -q stopping early would break the pipe under pipefail)
out="$(python3 "$summary" --reference new "$dir"/abbase_*.json 2>/dev/null)"
expect 'sharq-nvfp4-24 +1 +1024 +base +402\.0 .*-4\.74%'

# Nothing usable: an error
if python3 "$summary" "$dir/abbase_broken_1.json" 2>/dev/null; then
  echo "no rows should be an error" >&2
  exit 1
fi
echo "ab_summary: ok"
