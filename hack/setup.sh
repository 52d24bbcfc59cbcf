#!/usr/bin/env bash
# One command from a fresh Debian 12 clone to a container running in a VM: installs the
# dependencies, builds the binaries, the guest kernel (once per machine) and initramfs, then
# runs the demo container.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/install-deps.sh
make demo
