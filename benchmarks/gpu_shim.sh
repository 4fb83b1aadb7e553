# Sourced by the GPU scripts (with $repo and $py set): without an install of the package (a bare
# GPU machine), a folder that lays it out as pyproject's package-dir does, of links into this
# checkout, put first on PYTHONPATH.
if ! "$py" -c "import funasr_qwen4b.mlx_port" 2>/dev/null; then
  shim=/tmp/funasr-qwen4b-shim/funasr_qwen4b
  rm -rf /tmp/funasr-qwen4b-shim && mkdir -p "$shim"
  for f in "$repo"/funasr_qwen4b/*; do ln -s "$f" "$shim/"; done
  for d in reference mlx_port convert parity; do ln -s "$repo/$d" "$shim/$d"; done
  ln -s "$repo/datasets/clips" "$shim/clips"
  export PYTHONPATH=/tmp/funasr-qwen4b-shim${PYTHONPATH:+:$PYTHONPATH}
fi
