#!/usr/bin/env bash
# The study's missing runs, one after another, each result file committed as it lands; the report is
# regenerated after each. Safe to start again after an interruption (runs resume) and several times
# at once (a run another worker holds is skipped; across machines, where they share runs/study/). A
# refused or failed run (say, a plan being amended, not yet committed) is retried after a minute, five
# times in a row at most. Arguments go to
# `trimodal-study next` (e.g. --device cuda, --cell "lang.*"). Log: runs/study/worker.log.
set -u
cd "$(dirname "$0")/.."
# this checkout's code, not the one an editable install points at (a worktree may share the venv,
# and a run imports modules long after it starts)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p runs/study
export MUJOCO_GL=${MUJOCO_GL:-egl}
fails=0
while :; do
  out=$(nice .venv/bin/trimodal-study next "$@" 2>>runs/study/worker.log | tee -a runs/study/worker.log)
  case $out in *"every run has its result"*) break ;; esac
  f=$(printf '%s\n' "$out" | sed -n 's/^wrote //p' | tail -1)
  if [ -z "$f" ]; then
    fails=$((fails + 1))
    [ "$fails" -ge 5 ] && { echo "[worker] five failures in a row: stopping" >>runs/study/worker.log; break; }
    sleep 60
    continue
  fi
  fails=0
  report=()  # a stale report is not committed; the plots are listed once the report has written them
  .venv/bin/trimodal-study report >>runs/study/worker.log 2>&1 &&
    report=(docs/results/study/report.md $(ls docs/results/study/report_*.png 2>/dev/null))
  for _ in 1 2 3 4 5; do
    git add "$f" "${report[@]}" 2>/dev/null &&
      git commit -q -m "study: $(basename "$f" .json)" -- "$f" "${report[@]}" && break
    sleep 5
  done
done
