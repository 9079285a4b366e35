#!/bin/sh
# `make browser`: bring the Chromium that tests/service/api/test_page_browser.py drives.
# Usage: ensure_browser.sh CHROMIUM PYTHON
#   1. CHROMIUM (default /usr/bin/chromium) is there: nothing to do.
#   2. root with apt-get: install Debian's chromium package.
#   3. otherwise Playwright's own browser (a download into ~/.cache/ms-playwright), which the
#      test uses when CHROMIUM is absent.
# Where neither works it says what to run and exits 0: the browser test then skips, saying why.
set -u
chromium=$1
python=$2

[ -x "$chromium" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make browser: no $chromium; installing Debian's chromium with apt-get"
    if apt-get update -qq && apt-get install -y -qq chromium && [ -x "$chromium" ]; then
        exit 0
    fi
    echo "make browser: apt-get could not install chromium; trying Playwright's browser" >&2
fi

echo "make browser: no $chromium; installing Playwright's Chromium"
if "$python" -m playwright install chromium; then
    exit 0
fi

cat >&2 <<MESSAGE
make browser: no browser for tests/service/api/test_page_browser.py, which will be skipped.
Install one, then run make test again:
    as root:      apt-get install -y chromium
    or as you:    $python -m playwright install chromium
MESSAGE
exit 0
