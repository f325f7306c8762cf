#!/usr/bin/env bash
# Markdown tables of a bench/btcv/run.sh work folder: per-organ test Dice and HD95 of every run,
# in the correct convention (mm, undefined values excluded) and the paper convention (voxels).
#   bench/btcv/table.sh WORK
set -euo pipefail
work="${1:?usage: table.sh WORK}"
declare -A what=([a]="supervised, 2 labeled" [a1]="a + contrastive" [b]="semi-supervised (full)"
                 [b1]="b without contrastive" [b2]="b, LDC fixed weight" [b3]="b, adaptive pool thresholds"
                 [b4]="b, EMA-teacher targets" [b5]="b's batches, no unlabeled loss" [b6]="b, strong views in their own forward" [b7]="b, multipliers capped at 1" [b8]="b, pool organ gate (ratio 3)" [b9]="b8, strong views in their own forward" [b10]="b, teacher's inherited batch-norm statistics" [b11]="b, unlabeled terms and pool from half the steps" [b12]="b11 without the contrastive loss" [b13]="b11 with LDC at a fixed weight"
                 [c]="supervised, 12 labeled")
runs=()
for r in a a1 b b1 b2 b3 b4 b5 b6 b7 b8 b9 b10 b11 b12 b13 c; do [[ -f "${work}/runs/${r}/eval/metrics.json" ]] && runs+=("${r}"); done
first="${work}/runs/${runs[0]}/eval/metrics.json"
mapfile -t organs < <(jq -r '.summary.class_order[]' "${first}")

value() {  # value FILE JQ_PATH PRINTF_FORMAT
  local v; v="$(jq -r "$2 // \"NA\"" "$1")"
  if [[ "${v}" == "NA" ]]; then printf 'NA'; else printf "$3" "${v}"; fi
}

table() {  # table TITLE KEY PRINTF_FORMAT MEAN_KEY [EVAL_FOLDER]
  local title="$1" key="$2" format="$3" mean_key="$4" folder="${5:-eval}"
  echo "${title}"
  echo
  printf '| run | |'; printf ' %s |' "${organs[@]}"; printf ' mean | train wall |\n'
  printf '| --- | --- |'; for _ in "${organs[@]}"; do printf ' ---: |'; done; printf ' ---: | ---: |\n'
  for r in "${runs[@]}"; do
    local m="${work}/runs/${r}/${folder}/metrics.json"
    [[ -f "${m}" ]] || continue
    local wall; wall="$(tail -1 "${work}/runs/${r}/train_wall_s" 2>/dev/null || echo '?')"
    printf '| %s | %s |' "${r}" "${what[${r}]}"
    for o in "${organs[@]}"; do
      printf ' %s |' "$(value "${m}" ".summary.per_class[\"${o}\"].${key}" "${format}")"
    done
    printf ' **%s** | %s |\n' "$(value "${m}" ".summary.mean.${mean_key}" "${format}")" \
      "$([[ "${wall}" == "?" ]] && echo '?' || echo "$(( wall / 60 )) min")"
  done
  echo
}
table "Dice, correct convention (undefined excluded)" dice %.3f dice
table "HD95 in mm, correct convention (undefined excluded)" hd95_mm %.1f hd95_mm
table "Dice, paper convention (medpy, empty prediction 0)" paper_dice %.3f paper_dice
table "HD95 in voxels, paper convention" paper_hd95_voxels %.1f paper_hd95_voxels
table "Dice, correct convention, batch-norm statistics re-estimated on the training slices (eval --recalibrate-bn; a, a1, c on their labeled cases only)" dice %.3f dice eval-rc
table "HD95 in mm, correct convention, eval --recalibrate-bn" hd95_mm %.1f hd95_mm eval-rc
table "Dice, correct convention, each organ's largest connected component only (eval --largest-component)" dice %.3f dice eval-lc
table "HD95 in mm, correct convention, eval --largest-component" hd95_mm %.1f hd95_mm eval-lc
