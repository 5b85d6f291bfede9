#!/usr/bin/env bash
# System packages the tests and benchmarks use: Debian chromium (browser test), tesseract (peer
# engine in bench/read_accuracy.py) and the fonts of the synthetic data engine. Installs what is
# missing when it can (root + apt-get); otherwise says what is missing and the tests that need it
# skip with that reason (CI sets REQUIRE_BROWSER=1 so the browser test fails instead).
set -u
want=(chromium tesseract-ocr)  # package names; the command each provides is checked below
fonts_list="$(dirname "$0")/../workers/training/synth/FONTS.txt"
[ -f "$fonts_list" ] && mapfile -t fonts < <(grep -vE '^\s*(#|$)' "$fonts_list") || fonts=()
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
for pkg in "${fonts[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[system-deps] installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "[system-deps] warning: apt-get could not install ${missing[*]}"
else
  echo "[system-deps] missing (install with your package manager): ${missing[*]}"
fi
exit 0
