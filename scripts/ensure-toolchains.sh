#!/usr/bin/env bash
# The toolchains the broker kits build with: a JDK and Maven (Kafka, RocketMQ, Pulsar from Maven
# Central), Go (NSQ from the Go module proxy), gcc (the loopback-bind shim) and openssl (the TLS
# tests). Installs what is missing with apt-get when run as root; otherwise says what to install.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(default-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v go >/dev/null || missing+=(golang-go)
command -v gcc >/dev/null || missing+=(gcc)
command -v openssl >/dev/null || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "the broker kits need: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
