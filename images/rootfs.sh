#!/usr/bin/env bash
# Builds a minimal root file system directory for local sandboxes (docs/images.md): Debian's
# `minbase` variant with bash, coreutils, python3 and ca-certificates, the static sandboxd at
# /usr/local/bin/sandboxd, and the empty mount points the local jail binds over (/workspace,
# /tmp, /proc, /dev, /run/dari, and an empty /etc/resolv.conf to bind the host's over).
#
# Usage: images/rootfs.sh [--sandboxd PATH] [--suite SUITE] [--mirror URL] OUTPUT_DIR
#
# Without --sandboxd the daemon is built here as it ships: static, in the `sandboxd` profile.
# Needs mmdebstrap (preferred; without root it works in its unshare mode) or debootstrap (root),
# and network access to the mirror.
set -euo pipefail

usage() {
    sed -n 's/^# \{0,1\}//; 2,11p' "${BASH_SOURCE[0]}"
}

fail() {
    echo "rootfs.sh: $*" >&2
    exit 1
}

suite=bookworm
mirror=http://deb.debian.org/debian
sandboxd=
output=
while [ $# -gt 0 ]; do
    case "$1" in
        --sandboxd | --suite | --mirror)
            [ $# -ge 2 ] || fail "$1 needs a value"
            case "$1" in
                --sandboxd) sandboxd=$2 ;;
                --suite) suite=$2 ;;
                --mirror) mirror=$2 ;;
            esac
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*) fail "unknown option $1 (see --help)" ;;
        *)
            [ -z "$output" ] || fail "one output directory only (got $output and $1)"
            output=$1
            shift
            ;;
    esac
done
[ -n "$output" ] || fail "name the output directory (see --help)"
if [ -e "$output" ] && [ -n "$(ls -A "$output")" ]; then
    fail "$output exists and is not empty"
fi

if [ -z "$sandboxd" ]; then
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    target="$(uname -m)-unknown-linux-gnu"
    target_dir=${CARGO_TARGET_DIR:-$repo/target}
    echo "building the static sandboxd ($target, profile sandboxd)" >&2
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --quiet \
        -p dari-sandboxd --bin sandboxd --target "$target" --profile sandboxd)
    sandboxd="$target_dir/$target/sandboxd/sandboxd"
fi
[ -x "$sandboxd" ] || fail "$sandboxd is not an executable file"

packages=bash,coreutils,python3,ca-certificates
if command -v mmdebstrap >/dev/null 2>&1; then
    mmdebstrap --variant=minbase --include="$packages" "$suite" "$output" "$mirror"
elif command -v debootstrap >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "debootstrap needs root (or install mmdebstrap)"
    debootstrap --variant=minbase --include="$packages" "$suite" "$output" "$mirror"
else
    fail "install mmdebstrap or debootstrap"
fi

install -D -m 0755 "$sandboxd" "$output/usr/local/bin/sandboxd"
# The jail mounts its own /proc, a minimal /dev, a private /tmp and the session's /workspace,
# and binds the link's socket directory at /run/dari: each must exist, and hold nothing.
for dir in workspace tmp proc dev run/dari; do
    rm -rf "${output:?}/$dir"
    mkdir -p "$output/$dir"
done
chmod 1777 "$output/tmp"
rm -f "$output/etc/resolv.conf"
: >"$output/etc/resolv.conf"
# Package indexes and caches are of no use in a read-only root.
rm -rf "$output"/var/lib/apt/lists/* "$output"/var/cache/apt/*.bin
echo "built $output ($(du -sh "$output" | cut -f1))" >&2
