"""
Tests for the Redis store's URLs and for what its settings check warns
about: no server needed.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.store.redis import RedisURL, isRedisURL, parseRedisURL
from twisted_keycard.store.redis._connection import settingsWarnings
from twisted_keycard.store.redis._lua import MAX_TTL, ttl
from twisted_keycard.store.redis._store import _cursor, _streamId


class URLTests(SynchronousTestCase):
    def test_plain(self) -> None:
        url = parseRedisURL("redis://127.0.0.1:6380/2")
        self.assertEqual(url, RedisURL(hosts=(("127.0.0.1", 6380),), db=2))
        self.assertEqual(str(url), "redis://127.0.0.1:6380/2")
        self.assertEqual(url.channel, "keycard:changes@2")
        self.assertEqual(parseRedisURL("redis://cache").hosts, (("cache", 6379),))

    def test_tlsAndOptions(self) -> None:
        url = parseRedisURL(
            "rediss://[::1]:6390/0?ca=/etc/ca.pem&prefix=eu:&replicas=2"
            "&replica-timeout=0.5"
        )
        self.assertEqual(url.hosts, (("::1", 6390),))
        self.assertTrue(url.tls)
        self.assertEqual(url.caFile, "/etc/ca.pem")
        self.assertEqual(url.prefix, "eu:")
        self.assertEqual((url.replicas, url.replicaTimeout), (2, 0.5))
        self.assertEqual(str(url), "rediss://[::1]:6390/0")

    def test_sentinel(self) -> None:
        url = parseRedisURL("redis+sentinel://h1:26379,h2,10.0.0.3:26400/main/3")
        self.assertEqual(url.hosts, (("h1", 26379), ("h2", 26379), ("10.0.0.3", 26400)))
        self.assertEqual((url.master, url.db), ("main", 3))
        self.assertEqual(
            str(url), "redis+sentinel://h1:26379,h2:26379,10.0.0.3:26400/main/3"
        )

    def test_refused(self) -> None:
        """
        Bad URLs are refused with a reason; a password in the URL above all.
        """
        for text, reason in [
            ("redis://:secret@host/0", "--store-password-file"),
            ("redis://user:secret@host/0", "no user or password"),
            ("http://host/0", "not a Redis URL"),
            ("redis://h1,h2/0", "one host"),
            ("redis+sentinel://h1/", "master's name"),
            ("redis://host/zero", "database number"),
            ("redis://host/0/1", "unexpected path"),
            ("redis://host:99999/0", "bad port"),
            ("redis://host/0?bogus=1", "unknown Redis URL option 'bogus'"),
            ("redis://host/0?prefix=a b", "prefix="),
            ("redis://host/0?ca=/x.pem", "rediss://"),
            ("redis://host/0?replica-timeout=0", "replica-timeout="),
            ("redis://host/0?replicas=-1", "replicas="),
        ]:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as caught:
                    parseRedisURL(text)
                self.assertIn(reason, str(caught.exception))
                self.assertNotIn("secret", str(caught.exception))

    def test_isRedisURL(self) -> None:
        self.assertTrue(isRedisURL("rediss+sentinel://h/m/0"))
        self.assertFalse(isRedisURL("sqlite:/tmp/redis://x"))
        self.assertFalse(isRedisURL("redis"))


class EncodingTests(SynchronousTestCase):
    def test_cursor(self) -> None:
        """
        A stream entry's id and the follower's cursor stand for each other,
        in the same order.
        """
        for entry in ["0-1", "1733000000000-0", "1733000000000-4294967295"]:
            self.assertEqual(_streamId(_cursor(entry)), entry)
        self.assertLess(_cursor("1-4294967295"), _cursor("2-0"))

    def test_ttl(self) -> None:
        self.assertEqual(ttl(160.0, 100.0, 60.0), 120)
        self.assertEqual(ttl(100.0, 1000.0, 60.0), 1)
        self.assertEqual(ttl(float("inf"), 0.0, 60.0), MAX_TTL)


class SettingsTests(SynchronousTestCase):
    def test_durable(self) -> None:
        config = {
            "appendonly": "yes",
            "appendfsync": "always",
            "maxmemory-policy": "noeviction",
        }
        self.assertEqual(settingsWarnings(config), [])

    def test_warnings(self) -> None:
        for config, words in [
            ({"appendonly": "no"}, "appendonly no"),
            ({"appendonly": "yes", "appendfsync": "no"}, "appendfsync no"),
            ({"appendonly": "yes", "appendfsync": "everysec"}, "last second"),
            (None, "could not check"),
        ]:
            with self.subTest(config=config):
                warnings = settingsWarnings(config)
                self.assertEqual(len(warnings), 1)
                self.assertIn(words, warnings[0])
        evicting = {"appendonly": "yes", "appendfsync": "always"}
        evicting["maxmemory-policy"] = "allkeys-lru"
        self.assertIn("noeviction", settingsWarnings(evicting)[0])
