#!/usr/bin/env bash
# Set up hpnet on a fresh Debian/Ubuntu-like machine with Python 3.10-3.13:
#   1. system FFmpeg (needed by torchcodec) via apt when run as root or with password-less sudo,
#      otherwise a message saying exactly what to install (hpnet then decodes with PyAV's own FFmpeg);
#   2. a virtual environment in .venv (override with HPNET_VENV) holding hpnet and its pinned deps.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${HPNET_VENV:-.venv}"
say() { printf '[setup] %s\n' "$*"; }

# ---- Python ---------------------------------------------------------------------------------
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))'; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  say "no Python 3.10-3.13 found: install one (e.g. 'sudo apt-get install python3.11 python3.11-venv') or set PYTHON=/path/to/python"
  exit 1
fi

# ---- FFmpeg (torchcodec loads the system's libavcodec; PyAV is the fallback) ----------------
have_ffmpeg_libs() { ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; }
if ! have_ffmpeg_libs; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system FFmpeg with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    say "installing system FFmpeg with sudo apt-get"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    say "system FFmpeg libraries not found and cannot install them here."
    say "  install them with: sudo apt-get install ffmpeg   (or: conda install -c conda-forge 'ffmpeg<8')"
    say "  until then hpnet decodes with PyAV's bundled FFmpeg (slower, same results)."
  fi
fi

# ---- virtual environment + package ------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.hpnet-install-stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing hpnet and its pinned dependencies into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
else
  say "$VENV is up to date"
fi
