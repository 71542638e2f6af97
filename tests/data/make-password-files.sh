#!/bin/sh
# Regenerate the password files the htpasswd tests read, with the real tools
# (Debian: apache2-utils, whois, openssl, argon2).  Every password is the
# user's name followed by "-pw"; "long" has a 100-byte password.
set -eu
cd "$(dirname "$0")"
{
    htpasswd -nbB bcrypt bcrypt-pw
    htpasswd -nbm apr1 apr1-pw
    htpasswd -nbs sha1 sha1-pw
    htpasswd -nbd crypt crypt-pw
    htpasswd -nb2 sha256 sha256-pw
    htpasswd -nb5 sha512 sha512-pw
    htpasswd -nbB long "$(printf 'x%.0s' $(seq 100))"
} | grep -v '^$' > htpasswd.txt
{
    printf 'mk512:%s\n' "$(mkpasswd -m sha-512 mk512-pw)"
    printf 'mk256:%s\n' "$(mkpasswd -m sha-256 mk256-pw)"
    printf 'ossl6:%s\n' "$(openssl passwd -6 ossl6-pw)"
    printf 'ossl5:%s\n' "$(openssl passwd -5 ossl5-pw)"
    printf 'osslapr1:%s\n' "$(openssl passwd -apr1 osslapr1-pw)"
    printf 'argon:%s\n' "$(printf 'argon-pw' | argon2 "$(openssl rand -hex 8)" -id -e)"
} > shadow-like.txt
