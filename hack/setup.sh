#!/usr/bin/env bash
# One command from a fresh Debian 12 clone to a container running in a VM: installs the
# dependencies, builds the binaries, the guest kernel (once per machine) and initramfs, then
# runs the demo container. Each step is announced on standard error with its number.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> setup: step %s of 3: %s\n' "$1" "$2" >&2; }
step 1 "installing dependencies (hack/install-deps.sh)"
hack/install-deps.sh
step 2 "building the binaries and the guest image (make image; the first kernel build takes 10-30 minutes)"
make image
step 3 "running the demo container in a VM (what make demo runs)"
_output/bin/vessel run "demo-$$"
printf '\n==> setup: done\n' >&2
