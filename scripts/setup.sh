#!/bin/sh
# Set up robustlayers on a fresh machine: a local virtual environment with the package (and,
# with the argument "test", its test tools: pytest, tensorboard, mlflow, ray), torch installed
# only when missing (the CPU build 2.13.0 that pip finds locally), and the embedded
# Fashion-MNIST data from the Debian package when it is missing.
#   sh scripts/setup.sh          # what `make demo` needs
#   sh scripts/setup.sh test     # what `make test` needs
set -eu

case "${1:-}" in
    "") TARGET="." ;;
    test) TARGET=".[test]" ;;
    *) echo "setup: unknown argument '$1'; use no argument (the package) or 'test'" >&2; exit 2 ;;
esac

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
DATA=/usr/share/datasets/fashion-mnist

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 (no torch in $VENV)"
    "$VENV/bin/pip" install --quiet "torch==2.13.0"
fi

echo "setup: installing robustlayers and its dependencies ($TARGET)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$TARGET"

if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
        apt-get install -y -q dataset-fashion-mnist >/dev/null \
            || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
    else
        echo "setup: Fashion-MNIST is missing from $DATA."
        echo "       Install it as root with: apt-get install -y dataset-fashion-mnist"
        echo "       or pass --data-dir to a folder holding the four *-ubyte.gz files."
    fi
fi
