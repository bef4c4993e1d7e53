#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are not installed yet (with sudo unless
# root); prints what it installs and nothing when all are there.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0
printf 'apt-install: installing Debian packages: %s\n' "${missing[*]}"
sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
