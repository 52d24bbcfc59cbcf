#!/usr/bin/env bash
# Installs what Vessel needs on Debian 12: QEMU, the guest kernel source, busybox, protobuf
# tools, containerd, runc, podman and nerdctl, and the Go tools the build uses. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/go/bin:$PATH

if [ "$(id -u)" != 0 ]; then echo "install-deps: run as root" >&2; exit 1; fi
command -v go >/dev/null || { echo "install-deps: Go is required at /usr/local/go (https://go.dev/dl)" >&2; exit 1; }

# procps: pgrep in tests and the bench sweep; perl: the kernel build's scripts; mount
# (losetup) and e2fsprogs (mkfs.ext4, debugfs): the block device tests; erofs-utils
# (mkfs.erofs, dump.erofs): containerd 2.x's erofs snapshotter and its test. All but the
# last are on most Debian installs but not on minimal ones. qemu-system-x86 brings virtiofsd.
# bats, jq and gawk: runc's bats integration tests in `make conformance`. runsc: gVisor, the
# second reference runtime of `make bench` (its OCI CLI with the ptrace platform, no KVM).
# containernetworking-plugins (in /usr/lib/cni) and iptables: the CNI bridge networks of
# the nerdctl and podman tests with published ports.
pkgs=(
  make gcc libc6-dev git ca-certificates procps perl mount e2fsprogs
  qemu-system-x86 busybox-static
  linux-source-6.1 flex bison bc libelf-dev libssl-dev cpio xz-utils kmod
  libseccomp-dev pkg-config
  protobuf-compiler
  containerd runc iproute2 podman containernetworking-plugins iptables uidmap
  erofs-utils
  bats jq gawk
  runsc
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

gobin=/usr/local/bin
want_lint=v2.15.0
if ! golangci-lint version 2>/dev/null | grep -q "${want_lint#v}"; then
  GOBIN=$gobin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$want_lint
fi
# nerdctl, for the integration test that runs containerd's nerdctl on Vessel. Built from the
# module's source (go install of this version fails on the module's deprecation lookup).
want_nerdctl=v1.7.7
if ! nerdctl --version 2>/dev/null | grep -q "${want_nerdctl#v}"; then
  nerdctl_src=$(cd / && go mod download -json "github.com/containerd/nerdctl@$want_nerdctl" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$nerdctl_src" ] || { echo "install-deps: download of nerdctl $want_nerdctl failed" >&2; exit 1; }
  (cd "$nerdctl_src" && go build -ldflags "-X github.com/containerd/nerdctl/pkg/version.Version=$want_nerdctl" -o "$gobin/nerdctl" ./cmd/nerdctl)
fi
# containerd 2.x (containerd and ctr), for the integration tests of its blockfile and erofs
# snapshotters. Built from the module's source into a directory of its own, off PATH, so
# Debian's containerd stays the default; the tests look for it there (testutil.Containerd2Dir).
want_ctrd2=v2.2.9
ctrd2_dir=/usr/local/libexec/vessel/containerd2
if ! "$ctrd2_dir/containerd" --version 2>/dev/null | grep -qw "$want_ctrd2"; then
  ctrd2_src=$(cd / && go mod download -json "github.com/containerd/containerd/v2@$want_ctrd2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$ctrd2_src" ] || { echo "install-deps: download of containerd $want_ctrd2 failed" >&2; exit 1; }
  mkdir -p "$ctrd2_dir"
  (cd "$ctrd2_src" && go build -tags no_btrfs \
    -ldflags "-X github.com/containerd/containerd/v2/version.Version=$want_ctrd2" \
    -o "$ctrd2_dir/" ./cmd/containerd ./cmd/ctr)
fi
# QEMU 10 from bookworm-backports, for the integration tests of what needs QEMU 8.2 or newer
# (VM templates restored read-only by a jailed VMM). Unpacked into a directory of its own,
# off PATH, so Debian's QEMU stays the default (testutil.NewQEMUDir). The backports suite is
# read from the mirror this host's bookworm comes from, through a private apt list
# directory: the host's apt sources are not changed. Its firmware (SeaBIOS, iPXE) is the
# host's, which Debian's qemu-system-x86 above brings.
want_qemu10=10.0
qemu10_dir=/usr/local/libexec/vessel/qemu10
if ! "$qemu10_dir/bin/qemu-system-x86_64" -version 2>/dev/null | grep -q "version $want_qemu10\."; then
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 == "bookworm" { print $1; exit }')
  [ -n "$mirror" ] || { echo "install-deps: no bookworm apt source to read bookworm-backports from" >&2; exit 1; }
  bp=$(mktemp -d)
  trap 'rm -rf "$bp"' EXIT
  mkdir -p "$bp/lists/partial" "$bp/debs" "$bp/root"
  echo "deb $mirror bookworm-backports main" >"$bp/sources.list"
  apt_bp=(-o "Dir::Etc::SourceList=$bp/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$bp/lists" -o APT::Sandbox::User=root)
  apt-get "${apt_bp[@]}" update -q
  ver=$(apt-cache "${apt_bp[@]}" madison qemu-system-x86 | awk -v w="1:$want_qemu10." 'index($3, w) == 1 && /backports/ { print $3; exit }')
  [ -n "$ver" ] || { echo "install-deps: bookworm-backports has no qemu-system-x86 $want_qemu10" >&2; exit 1; }
  (cd "$bp/debs" && apt-get "${apt_bp[@]}" download -q "qemu-system-x86=$ver" "qemu-system-data=$ver")
  for f in "$bp"/debs/*.deb; do dpkg-deb -x "$f" "$bp/root"; done
  rm -rf "$qemu10_dir"
  mkdir -p "$qemu10_dir/bin" "$qemu10_dir/share"
  cp "$bp/root/usr/bin/qemu-system-x86_64" "$qemu10_dir/bin/"
  cp -a "$bp/root/usr/share/qemu" "$qemu10_dir/share/"
  rm -rf "$bp"
  trap - EXIT
  "$qemu10_dir/bin/qemu-system-x86_64" -version | head -1
fi
command -v protoc-gen-go >/dev/null || GOBIN=$gobin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
command -v protoc-gen-go-ttrpc >/dev/null || GOBIN=$gobin go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
# vessel-rootless: an unprivileged user for the rootless integration test (podman run as that
# user with vessel as its runtime), with a subordinate id range for podman's user namespace.
# The test skips, naming this script, when the user does not exist.
rootless_user=vessel-rootless
if ! id "$rootless_user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh "$rootless_user"
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q "^$rootless_user:" "$f" || echo "$rootless_user:200000:65536" >>"$f"
done
echo "install-deps: done"
