# Helpers shared by the peer installers in scripts/peers/. Sourced, not run:
#   . scripts/peers/lib.sh   (after `cd` to the repository root)

# Makes sure DIR/venv is a Python virtual environment in which CHECK (Python code that
# fails unless the right version is installed) passes; pip-installs SPEC otherwise.
peer_venv() { # DIR CHECK SPEC
  mkdir -p "$1"
  local py=${PYTHON:-python3}
  if [ ! -x "$1/venv/bin/python" ]; then
    "$py" -m venv "$1/venv"
  fi
  if ! "$1/venv/bin/python" -c "$2" 2>/dev/null; then
    "$1/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$3"
  fi
}
