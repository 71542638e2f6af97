"""
The keyring a bouncer signs and verifies tokens with, kept in step with the
store it shares with other bouncers.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.store._interfaces import IKeyringStore
from twisted_keycard.tokens._keyring import Keyring, SigningKey, UnknownKey

#: Seconds between two reloads of the keyring forced by an unknown key id,
#: so that a peer sending made-up key ids cannot make us hit the store.
RELOAD_INTERVAL = 5.0


@attrs.define
class KeyringHolder:
    """
    Holds the current L{Keyring}, loaded from (and on first use created in)
    an L{IKeyringStore}.
    """

    store: IKeyringStore
    clock: IReactorTime
    keyring: Keyring | None = None
    _lastReload: float = float("-inf")
    #: The store's keyring version when C{keyring} was loaded.
    _version: int | None = None

    async def load(self) -> Keyring:
        """
        Load the stored keyring, or make and store one if there is none.
        """
        # The version first: a keyring saved meanwhile is loaded again at
        # the next follow, never missed.
        version = await self.store.keyringVersion()
        keyring = await self.store.loadKeyring()
        if keyring is None:
            keyring = Keyring.generate(self.clock.seconds())
            await self.store.saveKeyring(keyring)
        self.keyring = keyring
        self._version = version
        self._lastReload = self.clock.seconds()
        return keyring

    async def follow(self) -> bool:
        """
        Load the keyring again if it was saved since it was loaded (a
        rotation, here or by another process), so that this bouncer signs
        with the new key and ends the old keys' grace by its own clock.
        One cheap read of the store's keyring version when nothing changed.

        @return: whether it was loaded again.
        """
        if self.keyring is None:
            return False
        if await self.store.keyringVersion() == self._version:
            return False
        await self.load()
        return True

    async def current(self) -> Keyring:
        """
        The keyring, loading it on first use.
        """
        if self.keyring is None:
            return await self.load()
        return self.keyring

    async def reloadFor(self, kid: str) -> Keyring:
        """
        Reload the keyring because a token named key C{kid}, unknown here
        (another bouncer may have rotated), at most once per
        L{RELOAD_INTERVAL}.
        """
        keyring = await self.current()
        if any(k.kid == kid for k in keyring.keys):
            return keyring
        if self.clock.seconds() - self._lastReload < RELOAD_INTERVAL:
            raise UnknownKey("unknown key")
        return await self.load()

    async def rotate(self, grace: float) -> SigningKey:
        """
        Make a new signing key and store the keyring; the older keys verify
        for C{grace} more seconds.
        """
        keyring = await self.load()
        rotated, fresh = keyring.rotate(self.clock.seconds(), grace)
        await self.store.saveKeyring(rotated)
        # The version stays the one before this save: the next follow loads
        # the keyring again, in case another process saved one meanwhile.
        self.keyring = rotated
        return fresh
