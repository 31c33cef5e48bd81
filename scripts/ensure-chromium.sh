#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser tests when they are missing.
# Where they cannot be installed, the browser tests skip and say why.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "==> chromium/chromedriver missing and cannot be installed here (need root and apt-get); browser tests will skip"
  exit 0
fi
echo "==> installing Debian's chromium and chromium-driver for the browser tests (about a minute)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
  || echo "==> could not install chromium; browser tests will skip"
exit 0
