A throttled login's ``Retry-After`` (HTTP) and ``Throttled.retryAfter``
follow the throttle's window instead of a fixed 60 s.
