#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser tests when they are missing.
# Where they cannot be installed, the browser tests skip and say why.
set -u
# The browser tests use these exact paths (selenium is given the driver, so it downloads nothing).
report() {
  echo "==> browser tests use $(/usr/bin/chromium --version 2>/dev/null | head -1) with $(/usr/bin/chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
}
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  report
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "==> chromium/chromedriver missing and cannot be installed here (need root and apt-get); browser tests will skip"
  exit 0
fi
echo "==> installing Debian's chromium and chromium-driver for the browser tests (about a minute)"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
  report
else
  echo "==> could not install chromium; browser tests will skip"
fi
exit 0
