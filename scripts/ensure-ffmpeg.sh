#!/usr/bin/env bash
# Installs ffmpeg (Debian's package) when it is missing: Ferry's interop tests
# use it as the real third-party RTSP publisher and reader.
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
	exit 0
fi
echo "ffmpeg not found: installing Debian's ffmpeg package" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
	ffmpeg -version | head -1 >&2
	exit 0
fi
if command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo apt-get update -qq >/dev/null
	sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
	exit 0
fi
cat >&2 <<'MSG'
ffmpeg is required by the interop tests and could not be installed automatically.
Install it, then run make test again:
  Debian/Ubuntu:  sudo apt-get install ffmpeg
  Fedora:         sudo dnf install ffmpeg
  macOS:          brew install ffmpeg
MSG
exit 1
