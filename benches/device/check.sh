#!/usr/bin/env bash
# The prepared GPU check (issue 13). On the GPU machine, from the repository root, with
# carry=["benches/device/carry"] (made here by benches/device/prepare.sh: the abi3 wheel and a
# preprocessed Hippocampus subset) or carry=["python/oxunet/_core.abi3.so", "benches/device/carry"]:
#     bash benches/device/check.sh            # writes $OUT/device_check.json (+ a log per step)
#     bash benches/device/check.sh --dry-run  # the same steps on the CPU at a tiny size (tested in CI)
# Budget: the steps stop being started after --budget-s (default 540 s, the 9 minutes the issue allows).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-device-check-out}"
CARRY=benches/device/carry
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import oxunet._core" 2>/dev/null; then
  whl=$(ls "$CARRY"/wheels/oxunet-*.whl 2>/dev/null | head -n 1)
  if [ -z "$whl" ]; then
    echo "check.sh: oxunet._core is not built: run benches/device/prepare.sh here and carry $CARRY" >&2
    exit 2
  fi
  site=$(mktemp -d)
  python3 -m pip install -q --no-deps --no-index --no-compile --target "$site" "$whl" || exit 2
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
exec python3 benches/device/check.py --out "$OUT" --hippocampus "$CARRY/pre" "$@"
