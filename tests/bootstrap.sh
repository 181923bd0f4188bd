#!/bin/sh
# What the test suite needs from the machine besides Python and the Redis and PostgreSQL
# servers: headless Chromium (the HTML report is opened in a real browser,
# tests/report/test_report_html.py) and psql (deploy/postgres/roles.sql is run for real,
# tests/deploy/test_deploy_postgres_roles.py) and dcmtk (storescu and echoscu: a second real
# sender for the DICOM listener, tests/listener/test_peers.py) and Orthanc (a PACS that forwards
# to the listener, tests/listener/test_orthanc.py; the test runs its own Orthanc on free loopback
# ports, so the system service the package sets up is stopped and disabled). Installs what is
# missing with apt-get (Debian or Ubuntu, as root or through sudo), or says what to install by
# hand. Safe to run again.
# The README's test command and .ci/run start with it.
set -eu

have() { command -v "$1" >/dev/null 2>&1; }
fail() {
    echo "tests/bootstrap.sh: $*" >&2
    exit 1
}

missing=""
what=""
if ! have chromium && ! have chromium-browser && ! have google-chrome; then
    missing="$missing chromium"
    what="$what Chromium (headless browser),"
fi
if ! have psql; then
    missing="$missing postgresql-client"
    what="$what psql (PostgreSQL client),"
fi
if ! have storescu || ! have echoscu; then
    missing="$missing dcmtk"
    what="$what dcmtk (DICOM storescu and echoscu),"
fi
if ! have Orthanc && [ ! -x /usr/sbin/Orthanc ]; then
    missing="$missing orthanc"
    what="$what Orthanc (DICOM server),"
fi
if [ -z "$missing" ]; then
    echo "tests/bootstrap.sh: Chromium, psql, dcmtk and Orthanc are installed"
    exit 0
fi
what=${what%,}

if [ "$(id -u)" = 0 ]; then
    sudo=""
elif have sudo; then
    sudo="sudo"
else
    fail "the tests need${what}; install them as root (Debian/Ubuntu: apt-get install -y${missing}), then run the tests again"
fi
have apt-get || fail "the tests need${what} and this machine has no apt-get: install them with your package manager (the browser may be called chromium or chromium-browser), then run the tests again"

echo "tests/bootstrap.sh: installing${missing} with apt-get (the tests need${what})"
# shellcheck disable=SC2086
$sudo apt-get install -y -q $missing >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q $missing >/dev/null
} || fail "apt-get could not install${missing}; install${what} by hand (Ubuntu names the browser chromium-browser), then run the tests again"
case " $missing " in
*" orthanc "*)
    # Debian's package starts a system Orthanc on 4242/8042 (with systemd or SysV init): stop
    # it and keep it from starting at boot; the test starts its own
    $sudo service orthanc stop >/dev/null 2>&1 ||
        $sudo /etc/init.d/orthanc stop >/dev/null 2>&1 || true
    if have update-rc.d; then $sudo update-rc.d orthanc disable >/dev/null 2>&1 || true; fi
    if have systemctl; then $sudo systemctl disable orthanc >/dev/null 2>&1 || true; fi
    ;;
esac
echo "tests/bootstrap.sh: installed${missing}"
