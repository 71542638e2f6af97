A token logs in again in one round trip: ``login(b"token", flags, mind,
token)`` answers the avatar.  ``KeycardClientService`` presents the last
keycard's token first when it reconnects (over plain TCP only a token that
came over plain TCP, over TLS only to a server it verified) and falls back
to its answerers on the same connection; ``reuseToken=False`` turns this
off.
