#!/usr/bin/env bash
# `make matrix`: the four nox cells of noxfile.py, two at a time. A cell spends most of its time
# waiting on worker subprocesses and Redis, so on a 2-core machine two cells at once take far less
# than two one after the other, which keeps CI (make test, then this) under 45 minutes.
# Each cell's output goes to .nox/logs/<cell>.log and is printed whole when the pair ends.
# Usage: scripts/matrix.sh NOX [CELL ...]   (default cells: lowest django60 django52 newest)
set -u
nox=$1
shift
cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(lowest django60 django52 newest)
mkdir -p .nox/logs
failed=()
for ((i = 0; i < ${#cells[@]}; i += 2)); do
  pair=("${cells[@]:i:2}")
  pids=()
  for cell in "${pair[@]}"; do
    if [ ${#pids[@]} -gt 0 ]; then
      # Each cell builds the package in the checkout's build/ directory: two builds at once break each
      # other, so the second cell starts once the first has installed (it then prints its versions).
      for ((waited = 0; waited < 900; waited++)); do
        grep -q "==> cell runs Python" ".nox/logs/${pair[0]}.log" 2>/dev/null && break
        kill -0 "${pids[0]}" 2>/dev/null || break
        sleep 1
      done
    fi
    echo "==> matrix cell $cell: started $(date -u +%H:%M:%S)"
    "$nox" --no-color -s "$cell" >".nox/logs/$cell.log" 2>&1 &
    pids+=($!)
  done
  for n in "${!pair[@]}"; do
    cell=${pair[$n]}
    wait "${pids[$n]}" || failed+=("$cell")
    echo "==> matrix cell $cell: ended $(date -u +%H:%M:%S); its output:"
    cat ".nox/logs/$cell.log"
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "==> matrix: FAILED cells: ${failed[*]} (their output is above and in .nox/logs/)"
  exit 1
fi
echo "==> matrix: every cell passed: ${cells[*]}"
