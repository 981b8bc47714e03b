#!/usr/bin/env bash
# Install the Debian packages the test-suite uses for real, when we can (root + apt).
set -euo pipefail
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v ruby >/dev/null 2>&1 || need+=(ruby)
command -v git >/dev/null 2>&1 || need+=(git)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)  # speaks the audio clips (gemmaios.audio.clipset)
command -v g++ >/dev/null 2>&1 || need+=(g++)  # runs the Metal kernel source on the CPU (tests/msl_host)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)  # speech clips for the audio front end (gemmaios.audio.clips)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]}; install them with your package manager (tests that need them will fail)" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
