#!/usr/bin/env bash
# Install Fashion-MNIST (Debian package dataset-fashion-mnist) where it is missing.
# Never fatal: without it the loader falls back to scikit-learn's digits and says so.
set -u
if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Fashion-MNIST (apt-get install dataset-fashion-mnist)..."
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
        || echo "warning: could not install dataset-fashion-mnist; falling back to digits" >&2
else
    echo "note: Fashion-MNIST not installed and not root; run 'sudo apt-get install dataset-fashion-mnist'" \
         "or pass --data-dir. Falling back to scikit-learn digits." >&2
fi
exit 0
