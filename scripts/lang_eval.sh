#!/usr/bin/env bash
# A checkpoint trained on the language-critical set, closed loop on its validation layouts (35-49, 15 per
# task), under each instruction condition: the training phrasings, the held-out ones, the paired task's
# instruction (same first frame: does it follow the words?), none (the instruction-blind rate), and
# wordings written for this check (docs/results/language/user_wordings.yaml).
# Usage: scripts/lang_eval.sh CHECKPOINT OUT_DIR [extra rollout args]. One rollout.json per condition.
set -eu
ckpt=$1 out=$2; shift 2
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
for cond in train heldout other_task empty user; do
  [ -f "$out/$cond/rollout.json" ] && continue  # done: a rerun resumes with the next condition
  how=(--instructions "$cond")
  [ "$cond" = user ] && how=(--wordings docs/results/language/user_wordings.yaml)
  nice .venv/bin/trimodal-ros rollout --checkpoint "$ckpt" --tasks lang --layouts 35-49 "${how[@]}" \
    --max-steps 150 --out "$out/$cond" "$@"
done
