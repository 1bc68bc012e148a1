#!/bin/sh
# Installs what tests/prometheus.rs needs: Debian's prometheus (2.42 on
# Debian 12). Only the binary is used; the packaged service is stopped and
# kept from starting, so nothing listens on :9090 behind the tests' backs.
# scripts/test-env.sh calls this (one line there, so its rework on another
# branch only has to keep the call).
set -eu
if command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's postinst must not start the service: a policy-rc.d that
# says 101 (kept as it is when the machine already has one).
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
prometheus --version 2>&1 | head -1
