#!/bin/sh
# Regenerate the OpenSSH keys and certificates the sshkeys tests read, with
# the real ssh-keygen (Debian: openssh-client).  Times are UTC; the tests
# check them at 2025-01-01.  The CAs' private keys are thrown away: the
# tests only need their public keys and what they signed.  These keys are
# for the tests only.
set -eu
cd "$(dirname "$0")"
rm -rf ssh
mkdir ssh
cd ssh
export TZ=UTC
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ssh-keygen -q -t ed25519 -N '' -C 'test user' -f user
ssh-keygen -q -t ecdsa -b 256 -N '' -C 'test user (ecdsa)' -f user-ecdsa
ssh-keygen -q -t ed25519 -N '' -C 'test CA' -f "$work/ca"
ssh-keygen -q -t ed25519 -N '' -C 'another CA' -f "$work/other-ca"
ssh-keygen -q -t rsa -b 3072 -N '' -C 'test RSA CA' -f "$work/rsa-ca"
cp "$work/ca.pub" "$work/other-ca.pub" "$work/rsa-ca.pub" .

# certify NAME KEY CA [ssh-keygen options]: writes NAME-cert.pub
certify() {
    name=$1 key=$2 ca=$3
    shift 3
    cp "$key.pub" "$work/$name.pub"
    ssh-keygen -q -s "$work/$ca" -I "$name" -z 1 "$@" "$work/$name.pub"
    cp "$work/$name-cert.pub" .
}
year=20200101:20300101
certify good user ca -n alice -V "$year"
certify expired user ca -n alice -V 20000101:20000201
certify future user ca -n alice -V 20400101:20410101
certify mallory user ca -n mallory -V "$year"
certify other-ca user other-ca -n alice -V "$year"
certify host user ca -h -n alice -V "$year"
certify force-command user ca -n alice -V "$year" -O force-command=/bin/true
certify source-address user ca -n alice -V "$year" -O source-address=10.0.0.0/8
certify no-principals user ca -V "$year"
certify deploy user ca -n deploy,ops -V "$year"
certify rsa-ca user-ecdsa rsa-ca -n alice -V "$year"
