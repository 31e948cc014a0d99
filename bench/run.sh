#!/usr/bin/env bash
# Benchmarks renkei against Orthanc on this machine, in one run: see docs/benchmarks.md.
#
#   bash bench/run.sh            full run (~2,000 instances, 1.1 GB; 100,000 studies for QIDO; 8-20 min)
#   bash bench/run.sh --quick    small run (~220 instances; 10,000 studies for QIDO; a few minutes)
#   bash bench/run.sh --dimse    only the DIMSE phase (dcmtk storescu/storescp/getscu and renkei's dimse client,
#                                same data set; a few minutes); results between the bench-dimse markers
#
# Other flags go to the Go program (go run ./bench -h): --perf records CPU profiles of renkei with perf,
# --keep keeps the servers' data, --out DIR moves the output (default bench/out, ignored by git).
# Only Debian packages are installed (apt-get), and only when missing. Every process started is ended on exit.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

need=()
command -v Orthanc >/dev/null || need+=(orthanc)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v dcmcjpls >/dev/null || need+=(dcmtk)
for a in "$@"; do
  if [ "$a" = "--perf" ] || [ "$a" = "-perf" ]; then command -v perf >/dev/null || need+=(linux-perf); fi
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's package starts its own Orthanc service; the benchmark starts its own and needs no other.

out=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out|-out) out="$2"; args+=("$1" "$2"); shift 2 ;;
    --quick) args+=(-quick); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
bin="${out:-$repo/bench/out}/bin"
mkdir -p "$bin"
go build -o "$bin/bench" ./bench

pid=""
stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'stop; exit 130' INT TERM HUP
export TCP_NODELAY=1
"$bin/bench" -repo "$repo" "${args[@]}" &
pid=$!
wait "$pid"
