"""
Public-key signature keycards, SSH style: the bouncer sends a nonce, the
client signs it (with the exchange's context) with its private key, and the
bouncer checks the signature against the client's keys in OpenSSH
C{authorized_keys} format (Ed25519, ECDSA, RSA, and FIDO
C{sk-ssh-ed25519@openssh.com} security keys, L{SecurityKey}).  No shared
secret is kept on the server.

Key files hold C{name [options] ssh-ed25519 AAAA... [comment]} lines: an
OpenSSH C{authorized_keys} line prefixed by the avatar name it logs in as,
with the options described in L{twisted_keycard.sshkeys._authorizedkeys}
(C{from=}, C{expiry-time=}, C{cert-authority}, C{principals=}, session
options taken as no-ops, and C{command=} and the like refused unless
ignored: L{IGNORABLE_OPTIONS}).  A client may present an OpenSSH user
certificate signed by a CA that a C{cert-authority} line trusts for its
name (see
L{twisted_keycard.sshkeys._authorizedkeys}).  The strcred name is C{sshkeys:FILE}.

A client signs with a private key it reads (L{SSHAnswerer}), or asks an
SSH agent to sign (L{SSHAgentAnswerer}, over C{SSH_AUTH_SOCK}).
"""

from twisted_keycard.sshkeys._agent import (
    AgentError,
    AgentKey,
    SSHAgentAnswerer,
    agentAnswerers,
    agentEndpoint,
    agentSign,
    isPublicKeyFile,
    listAgentKeys,
)
from twisted_keycard.sshkeys._authorizedkeys import (
    IGNORABLE_OPTIONS,
    MIN_RSA_BITS,
    SK_ED25519,
    AuthorizedKey,
    PublicKey,
    SecurityKey,
    parseAuthorizedKeys,
    readAuthorizedKeys,
)
from twisted_keycard.sshkeys._keys import (
    LABEL,
    ISSHExchange,
    PrivateKey,
    SignatureProofCheck,
    SSHAnswerer,
    SSHExchange,
    SSHKeycard,
    SSHKeys,
    context,
    loadPrivateKey,
    signWith,
    verifyWith,
)

__all__ = [
    "IGNORABLE_OPTIONS",
    "LABEL",
    "MIN_RSA_BITS",
    "SK_ED25519",
    "AgentError",
    "AgentKey",
    "AuthorizedKey",
    "ISSHExchange",
    "PrivateKey",
    "PublicKey",
    "SSHAgentAnswerer",
    "SSHAnswerer",
    "SSHExchange",
    "SSHKeycard",
    "SSHKeys",
    "SecurityKey",
    "SignatureProofCheck",
    "agentAnswerers",
    "agentEndpoint",
    "agentSign",
    "context",
    "isPublicKeyFile",
    "listAgentKeys",
    "loadPrivateKey",
    "parseAuthorizedKeys",
    "readAuthorizedKeys",
    "signWith",
    "verifyWith",
]
