#!/usr/bin/env bash
# Install what the tests need (into .venv, plus Debian's Chromium for the browser test) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh requirements/test.txt
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will say why it cannot run"
fi
exec .venv/bin/python -m pytest "$@"
