#!/usr/bin/env bash
# Builds, on this machine, what the GPU check carries: the abi3 wheel of oxunet (maturin, release) and a
# preprocessed Hippocampus subset (N cases, default 40) under benches/device/carry/ (git-ignored).
# Then run the check on the device machine with carry=["benches/device/carry"]:  bash benches/device/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-40}"
CARRY=benches/device/carry
RAW_SRC="${OXUNET_HIPPOCAMPUS:-../shared/data/Dataset004_Hippocampus}"
mkdir -p "$CARRY/wheels"
if [ -z "${SKIP_WHEEL:-}" ]; then
  rm -f "$CARRY"/wheels/*.whl
  python3 -m maturin build --release -o "$CARRY/wheels"
fi
work=$(mktemp -d)
mkdir -p "$work/raw/Dataset004_Hippocampus/imagesTr" "$work/raw/Dataset004_Hippocampus/labelsTr"
for f in $(ls "$RAW_SRC/labelsTr" | grep -v '^\._' | sort | head -n "$N"); do
  case="${f%.nii.gz}"
  cp "$RAW_SRC/labelsTr/$f" "$work/raw/Dataset004_Hippocampus/labelsTr/"
  cp "$RAW_SRC/imagesTr/${case}_0000.nii.gz" "$work/raw/Dataset004_Hippocampus/imagesTr/"
done
python3 - "$RAW_SRC/dataset.json" "$work/raw/Dataset004_Hippocampus/dataset.json" "$N" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["numTraining"] = int(sys.argv[3]); json.dump(d, open(sys.argv[2], "w"), indent=1)
PY
rm -rf "$CARRY/pre"
python3 -m oxunet.cli plan-and-preprocess -d 4 -c 3d_fullres -np 2 --raw-dir "$work/raw" --preprocessed-dir "$CARRY/pre" --quiet
rm -rf "$work"
du -sh "$CARRY"
