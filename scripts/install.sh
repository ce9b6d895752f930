#!/usr/bin/env bash
# Set up a fresh machine: Debian packages (the Bible corpus), a venv with torch first, then the
# project. Idempotent: reruns skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: headless screenshots of the feature pages and the browser tests.
# slurm-wlm, slurmdbd, munge, mariadb-server: the one-node test cluster (scripts/slurm-up.sh).
# g++: torch.compile's CPU code generation (extract.compile and its test).
apt_packages=(sword-text-kjv sword-text-sparv sword-text-web dict-freedict-eng-spa dict-freedict-spa-eng chromium slurm-wlm slurmdbd munge mariadb-server g++)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test]"
