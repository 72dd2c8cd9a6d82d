#!/usr/bin/env bash
# Preview, check and plan a pull request's change of the cloud: runs `stackwave check`, `diff`
# and `plan --from BASE --to HEAD` on this repository (no cluster needed) and writes one
# Markdown comment (findings table first, per-component detail collapsed).
#
# Usage: ci/stackwave-pr.sh BASE_REV HEAD_REV [COMMENT_FILE]
# Environment: STACKWAVE (the binary, default `stackwave`), STACKWAVE_SECRETS (a Secrets YAML
# file for renders; without it bound values render as placeholders — output is masked anyway),
# STACKWAVE_FAIL_ON (error|warning, default error).
# Exit code: the check's (0 nothing at or above STACKWAVE_FAIL_ON, 1 findings, 2 could not run).
set -uo pipefail
base="${1:?base revision}"
head="${2:?head revision}"
out="${3:-stackwave-comment.md}"
sw="${STACKWAVE:-stackwave}"
args=(--repo . --from "$base" --to "$head")
if [ -n "${STACKWAVE_SECRETS:-}" ]; then
  args+=(--secrets "$STACKWAVE_SECRETS")
fi

"$sw" -o markdown check "${args[@]}" --fail-on "${STACKWAVE_FAIL_ON:-error}" >"$out.check"
check=$?
"$sw" -o markdown diff "${args[@]}" >"$out.diff"
diff=$?
"$sw" plan "${args[@]}" >"$out.plan"
plan=$?
{
  cat "$out.check"
  echo
  if [ "$diff" -le 1 ]; then cat "$out.diff"; else echo "_diff could not run (exit $diff)_"; fi
  echo
  echo "<details><summary><b>Upgrade plan</b></summary>"
  echo
  echo '```'
  if [ "$plan" -eq 0 ]; then cat "$out.plan"; else echo "plan could not run (exit $plan)"; fi
  echo '```'
  echo "</details>"
} >"$out"
rm -f "$out.check" "$out.diff" "$out.plan"
echo "wrote $out (check exit $check, diff exit $diff)"
exit "$check"
