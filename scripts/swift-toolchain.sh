#!/usr/bin/env bash
# A Swift 6.2+ toolchain for a Linux box that has none (the tests then compile and run the
# app's Swift instead of skipping): Debian sid's `swiftlang` package in a debootstrap chroot,
# cached between runs. About 1 minute and 4 GB; needs root (debootstrap, chroot, bind mounts).
#
#   sudo bash scripts/swift-toolchain.sh            # create (or reuse) the chroot + wrappers
#   bash scripts/swift-toolchain.sh --print-bin     # where the swift/swiftc wrappers are
#
# The tests find the wrappers by themselves (tests/swift_toolchain.py); or export
# GEMMAIOS_SWIFT="$(bash scripts/swift-toolchain.sh --print-bin)".
# Location: $GEMMAIOS_SWIFT_CHROOT, default ${XDG_CACHE_HOME:-~/.cache}/gemmaios/swift-sid.
set -euo pipefail

CACHE="${GEMMAIOS_SWIFT_CHROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/gemmaios/swift-sid}"
ROOT="$CACHE/root"
BIN="$CACHE/bin"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

case "${1:-}" in
  --print-bin) echo "$BIN"; exit 0 ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  "") ;;
  *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "swift-toolchain.sh needs root for debootstrap/chroot: sudo bash $0" >&2
  exit 1
fi

if [ ! -x "$ROOT/usr/bin/swiftc" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
  mkdir -p "$ROOT"
  debootstrap --variant=minbase sid "$ROOT" "$MIRROR"
  # sid's Release file may be past its Valid-Until on a cached mirror
  chroot "$ROOT" apt-get -o Acquire::Check-Valid-Until=false update -qq
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    swiftlang libc6-dev libstdc++-dev ca-certificates
fi

# `swift test` links lib_Testing_Foundation.so, which some swiftlang builds lack: an empty stub.
for dir in "$ROOT"/usr/lib/swift/linux "$ROOT"/usr/libexec/swift/*/lib/swift/linux; do
  if [ -d "$dir" ] && [ ! -e "$dir/lib_Testing_Foundation.so" ]; then
    echo 'void gemmaios_testing_foundation_stub(void) {}' > "$ROOT/tmp/stub.c"
    chroot "$ROOT" sh -c "cc -shared -o '${dir#"$ROOT"}/lib_Testing_Foundation.so' /tmp/stub.c" || true
  fi
done

mkdir -p "$BIN"
cat > "$BIN/run" <<RUN
#!/usr/bin/env bash
# Runs a command inside the Swift chroot, in the current folder (bind-mounted at the same path).
set -euo pipefail
root="$ROOT"
for path in /proc /dev /tmp "\$HOME" "\$PWD" \${GEMMAIOS_CHROOT_BINDS:-}; do
  mkdir -p "\$root\$path"
  mountpoint -q "\$root\$path" || mount --bind "\$path" "\$root\$path"
done
exec chroot "\$root" /usr/bin/env -C "\$PWD" HOME="\$HOME" "\$@"
RUN
for tool in swift swiftc; do
  printf '#!/bin/sh\nexec "$(dirname "$0")/run" /usr/bin/%s "$@"\n' "$tool" > "$BIN/$tool"
done
chmod +x "$BIN/run" "$BIN/swift" "$BIN/swiftc"
"$BIN/swiftc" --version
echo "Swift wrappers in $BIN (the tests find them; or export GEMMAIOS_SWIFT=$BIN)"
