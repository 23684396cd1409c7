#!/usr/bin/env bash
# Install pedfrac on a fresh Debian machine: the DICOM tools from Debian's packages (as root),
# then a virtual environment in .venv with the pinned Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

# orthanc-webviewer and chromium serve the test that shows the overlays in a real viewer.
DEBIAN_PACKAGES=(dcmtk dicom3tools orthanc orthanc-webviewer chromium fonts-nanum iproute2 util-linux)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install.sh: missing Debian packages: ${missing[*]}; run as root or install them with apt-get" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# Plain pip on purpose: it takes torch 2.14.1 and torchvision 0.29.1 from the local wheel store.
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
echo "install.sh: pedfrac installed in .venv; run .venv/bin/pedfrac --help"
