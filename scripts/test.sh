#!/usr/bin/env bash
# Install, then run the whole test suite inside a loopback-only network namespace, because Orthanc
# and dcmtk's storescp listen on every interface. Arguments are passed on to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install.sh

if [[ $(id -u) -eq 0 ]]; then
    namespace=(unshare --net)
else
    namespace=(unshare --user --map-root-user --net)
fi

exec "${namespace[@]}" -- bash -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' pytest "$@"
