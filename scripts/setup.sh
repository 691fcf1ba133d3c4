#!/usr/bin/env bash
# Set up hpnet on a fresh Debian/Ubuntu-like machine with Python 3.10-3.13:
#   1. system FFmpeg (needed by torchcodec) via apt when run as root or with password-less sudo,
#      otherwise a message saying exactly what to install (hpnet then decodes with PyAV's own FFmpeg);
#      and the Python's venv module (python3.X-venv) the same way when it is missing;
#   2. a virtual environment in .venv (override with HPNET_VENV) holding hpnet and its pinned deps.
# Re-running is cheap: the install is skipped while pyproject.toml and the Python are unchanged;
# a venv left without pip (a failed creation) is made again.
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

# ---- system packages: FFmpeg (torchcodec loads the system's libavcodec; PyAV is the fallback),
# and the interpreter's venv module where Debian ships it apart (python3.X-venv) ---------------
ldconfig_cmd() {
  command -v ldconfig 2>/dev/null && return
  for c in /sbin/ldconfig /usr/sbin/ldconfig; do [ -x "$c" ] && { echo "$c"; return; }; done
  return 1
}
have_ffmpeg_libs() {  # (the listing is read whole: grep -q on a pipe can SIGPIPE ldconfig)
  local ldc libs
  ldc="$(ldconfig_cmd)" || return 1
  libs="$("$ldc" -p 2>/dev/null || true)"
  [[ "$libs" == *libavcodec.so* ]]
}
have_venv_module() { "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; }
as_root() {  # run as root when we are, or through password-less sudo; else fail
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}
apt_install() {  # apt-get install "$@" as root; a failure (no root, apt locked, offline) is said, not fatal
  command -v apt-get >/dev/null 2>&1 && as_root true || return 1
  say "installing $* with apt-get"
  as_root apt-get update -qq >/dev/null 2>&1 || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}
if ! have_ffmpeg_libs && ! apt_install ffmpeg; then
  say "system FFmpeg libraries not found and could not be installed here."
  say "  install them with: sudo apt-get install ffmpeg   (or: conda install -c conda-forge 'ffmpeg<8')"
  say "  until then hpnet decodes with PyAV's bundled FFmpeg (slower, same results)."
fi
if ! have_venv_module; then
  pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  if ! apt_install "python$pyver-venv" || ! have_venv_module; then
    say "$PY cannot make virtual environments (no ensurepip): install python$pyver-venv"
    say "  (sudo apt-get install python$pyver-venv) or set PYTHON to another Python 3.10-3.13"
    exit 1
  fi
fi

# ---- virtual environment + package ------------------------------------------------------------
venv_works() { "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }
if [ -x "$VENV/bin/python" ] && ! venv_works; then  # a venv cut short (e.g. ensurepip failed)
  say "$VENV has no working pip: making it again"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.hpnet-install-stamp"
want="$(cat pyproject.toml <("$VENV/bin/python" -VV) | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing hpnet and its pinned dependencies into $VENV (first time: several minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
else
  say "$VENV is up to date"
fi
