#!/usr/bin/env bash
# Rebuild a checkpoint packed by pack_checkpoint.py: unpack_checkpoint.sh CKPT_DIR PART_FILE...
# (meta.tar and the w?? parts, in any order and from any folders).
set -euo pipefail
out=$1; shift
mkdir -p "$out"
parts=()
for f in "$@"; do
  case "$(basename "$f")" in
    meta.tar) tar xf "$f" -C "$out" ;;
    w[0-9][0-9]) parts+=("$f") ;;
  esac
done
printf '%s\n' "${parts[@]}" | awk -F/ '{print $NF "\t" $0}' | sort | cut -f2 | xargs cat | gunzip > "$out/model.safetensors"
echo "wrote $out/model.safetensors from ${#parts[@]} parts"
