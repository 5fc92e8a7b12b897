#!/usr/bin/env bash
# AFSFT vs plain SFT from random data, with the state written in the observation text (perception out
# of the way): the measurement of docs/results.md, "Does the critic rank?".
#
#   bash scripts/text_state_study.sh [OUT] [TASKS...]     # default OUT=runs/text-study, both tasks
#
# Per task: 300 random episodes (seed 0), then for seeds 0 1 2 one AFSFT and one plain SFT run with
# the defaults of `vlmq train` (1,500 steps; 3,000 on Blackjack, whose 300 episodes hold only ~400
# turns and whose critic ranks from step ~1,400; STEPS overrides both), JOBS (default 2) at a time,
# each evaluated greedily on 100 episodes of seeds no data uses (900,000,000 + 10,000 * seed).
# Resumable: finished runs are skipped, killed ones resumed. One torch thread per run; alone, a
# 1,500-step run takes about 8 min and a 3,000-step one 16 (13-35 min when 3-4 runs share 2 cores).
# CONDITIONS (default "afsft sft"), EXTRA (more `vlmq train` flags) and MODEL (default tiny; a model
# folder, e.g. a `vlmq pretrain-tiny --out` one) change the runs; any task id works, images included.
set -euo pipefail
OUT=${1:-runs/text-study}
shift || true
TASKS=("$@")
[ ${#TASKS[@]} -gt 0 ] || TASKS=(gym_cards/NumberLine-text gym_cards/Blackjack-text)
steps_for() { if [ -n "${STEPS:-}" ]; then echo "$STEPS"; elif [[ $1 == *Blackjack* ]]; then echo 3000; else echo 1500; fi; }
export OMP_NUM_THREADS=1

one_run() {  # task data name filter seed
  local task=$1 data=$2 run=$3 filter=$4 seed=$5
  if [ -f "$run/eval100.json" ]; then return; fi
  if [ -f "$run/summary.json" ]; then :
  elif [ -f "$run/config.json" ] && ls "$run"/checkpoint-* >/dev/null 2>&1; then
    vlmq train --resume "$run" --quiet
  else
    rm -rf "$run"
    vlmq train --env "$task" --model "$MODEL" --data "$data" --filter "$filter" --steps "$(steps_for "$task")" \
      --lr 1e-3 --batch-size 8 --eval-every 500 --eval-episodes 30 --checkpoint-every 500 \
      --num-envs 8 --seed "$seed" --device cpu --out "$run" --quiet $EXTRA
  fi
  vlmq eval --env "$task" --model "$run" --episodes 100 --num-envs 10 \
    --seed $((900000000 + 10000 * seed)) --json "$run/eval100.json"
}

EXTRA=${EXTRA:-}  # more `vlmq train` flags, e.g. EXTRA="--lr-schedule constant"
MODEL=${MODEL:-tiny}  # `--model` of every run: a name or a model folder
CONDITIONS=${CONDITIONS:-"afsft sft"}
export OUT STEPS EXTRA MODEL
export -f one_run steps_for
for task in "${TASKS[@]}"; do
  data=$OUT/data/${task//\//-}
  [ -f "$data/.complete" ] || {
    rm -rf "$data"
    vlmq collect "$task" --policy random -n 300 --seed 0 --num-envs 4 --out "$data"
    touch "$data/.complete"
  }
done
# every (task, condition, seed) unit, JOBS at a time
for task in "${TASKS[@]}"; do
  name=${task//\//-}
  for seed in 0 1 2; do
    for cond in $CONDITIONS; do
      filt=$([ "$cond" = afsft ] && echo binary || echo none)
      echo "$task $OUT/data/$name $OUT/$name/$cond-seed$seed $filt $seed"
    done
  done
done | xargs -P "${JOBS:-2}" -L 1 bash -c 'one_run "$@"' _
python3 - "$OUT" <<'EOF'
import json, statistics, sys
from pathlib import Path
from vlmq.train.plot import plot_runs
out = Path(sys.argv[1])
for task in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "data"):
    runs = sorted(task.glob("*-seed*"))
    metrics = ("eval/greedy/success_rate", "critic/ranking_accuracy", "eval/greedy/valid_rate",
               "train/filter_pass_frac")
    print(plot_runs(runs, out / f"{task.name}.png", metrics, labels=[r.name for r in runs],
                    groups=[r.name.split("-")[0] for r in runs]))
    for cond in ("afsft", "sft"):
        runs = sorted(task.glob(f"{cond}-seed*/eval100.json"))
        if not runs:
            continue
        vals = [json.loads(r.read_text()) for r in runs]
        s = [100 * v["success_rate"] for v in vals]
        rank = [json.loads((r.parent / "summary.json").read_text()).get("ranking_accuracy") for r in runs]
        spread = statistics.pstdev(s) if len(s) > 1 else 0.0
        print(f"{task.name} {cond}: success {statistics.mean(s):.1f} +- {spread:.1f} over {len(s)} seeds "
              f"{[round(x) for x in s]}, valid {[round(100 * v['valid_rate']) for v in vals]}, ranking {rank}")
EOF
