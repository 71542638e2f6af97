"""
Tests for L{twisted_keycard._files}: entries files read again by
content, in a thread, keeping the last good version.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import _files
from twisted_keycard._files import (
    CHECK_INTERVAL,
    ParsedEntries,
    WatchedEntries,
    parseLines,
    writePrivateFile,
)

from ._threads import QueuedThread, inline


def parseNumbers(text: str) -> ParsedEntries[int]:
    """
    C{name:number} lines; a line without a number is bad.
    """
    numbers = {}

    def add(line: str) -> None:
        name, _, value = line.partition(":")
        if not value.strip().isdigit():
            raise ValueError("expected name:number")
        numbers[name] = int(value)

    return ParsedEntries(numbers, parseLines(text, add))


def lookup(entries: WatchedEntries[int], name: str) -> int | None:
    """
    Look C{name} up as a checker does within L{WatchedEntries.whenCurrent}
    when nothing waits: the file checked (a changed one read again in the
    background), then the version in use read.
    """
    entries.pending()
    return entries.current().get(name)


def whenRead(entries: WatchedEntries[int]) -> Deferred[None]:
    """
    Fires once the version in use is the file as it is now.
    """
    return entries.whenCurrent(lambda: succeed(None))


class WatchedEntriesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.path.write_text("alice:1111\nbob:2222\n")
        self.clock = Clock()
        self.clock.advance(1000)
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]

    def watch(self, runInThread: object = inline) -> WatchedEntries[int]:
        return WatchedEntries(
            {},
            self.path,
            parseNumbers,
            clock=self.clock,
            runInThread=runInThread,  # type: ignore[arg-type]
        )

    def logged(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def test_sameSizeSameTimeReplaced(self) -> None:
        """
        A file replaced (as editors and C{os.replace} do) by one of the same
        size and modification time is read again: the removed entry goes.
        """
        entries = self.watch()
        before = os.stat(self.path)
        other = self.path.with_name("new")
        other.write_text("alice:1111\nbob:9999\n")
        os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(other, self.path)
        self.assertEqual(os.stat(self.path).st_size, before.st_size)
        self.assertEqual(os.stat(self.path).st_mtime_ns, before.st_mtime_ns)
        self.assertEqual(lookup(entries, "bob"), 9999)

    def test_sameSizeSameTimeInPlace(self) -> None:
        """
        A file rewritten in place, with its modification time put back, is
        read again (its change time moved).
        """
        entries = self.watch()
        before = os.stat(self.path)
        with open(self.path, "r+") as f:
            f.write("alice:1111\nbob:9999\n")
        os.utime(self.path, ns=(before.st_atime_ns, before.st_mtime_ns))
        self.assertEqual(lookup(entries, "bob"), 9999)

    def test_sameStampContentChecked(self) -> None:
        """
        Even when nothing in the file's C{stat} changed (a rewrite within
        one timestamp tick), the content is checked again after the
        interval, and the change found by its hash.
        """
        stamp = (1, 2, 3, 4, 5)
        self.patch(_files, "fileStamp", lambda path: stamp)
        entries = self.watch()
        self.path.write_text("alice:1111\nbob:9999\n")
        self.clock.advance(CHECK_INTERVAL - 1)
        self.assertEqual(lookup(entries, "bob"), 2222)
        self.clock.advance(1)
        self.assertEqual(lookup(entries, "bob"), 9999)

    def test_readInThread(self) -> None:
        """
        A changed file is read and parsed in the thread; look-ups meanwhile
        are answered from the version before, and start no second reading.
        """
        parsed: list[str] = []

        def parse(text: str) -> ParsedEntries[int]:
            parsed.append(text)
            return parseNumbers(text)

        thread = QueuedThread()
        entries = WatchedEntries(
            {}, self.path, parse, clock=self.clock, runInThread=thread
        )
        self.assertEqual(len(parsed), 1)
        writePrivateFile(self.path, b"bob:9999\n")
        self.assertEqual(lookup(entries, "alice"), 1111)
        self.assertEqual(lookup(entries, "bob"), 2222)
        self.assertEqual(thread.calls, [_files.checkVersion])
        self.assertEqual(len(parsed), 1)
        thread.runAll()
        self.assertEqual(len(parsed), 2)
        self.assertIsNone(lookup(entries, "alice"))
        self.assertEqual(lookup(entries, "bob"), 9999)
        self.assertEqual(thread.calls, [])

    def test_readyWaitsForChange(self) -> None:
        """
        L{WatchedEntries.whenCurrent} waits for the reading of a file whose
        C{stat} changed, so no look-up after it gets the version known to
        be old.
        """
        thread = QueuedThread()
        entries = self.watch(thread)
        self.successResultOf(whenRead(entries))
        writePrivateFile(self.path, b"bob:9999\n")
        ready = whenRead(entries)
        self.assertNoResult(ready)
        thread.runAll()
        self.successResultOf(ready)
        self.assertEqual(lookup(entries, "bob"), 9999)

    def test_readyIntervalDoesNotWait(self) -> None:
        """
        A content check due only by the interval runs in the background:
        L{WatchedEntries.whenCurrent} does not wait for it.
        """
        thread = QueuedThread()
        entries = self.watch(thread)
        self.clock.advance(CHECK_INTERVAL)
        self.successResultOf(whenRead(entries))
        self.assertEqual(len(thread.calls), 1)
        thread.runAll()
        self.successResultOf(whenRead(entries))
        self.assertEqual(thread.calls, [])

    def test_unchangedNotRead(self) -> None:
        """
        Look-ups of an unchanged file within the interval only C{stat} it.
        """
        thread = QueuedThread()
        entries = self.watch(thread)
        for _ in range(3):
            self.assertEqual(lookup(entries, "alice"), 1111)
            self.clock.advance(1)
        self.assertEqual(thread.calls, [])

    def test_sameContentNotParsed(self) -> None:
        """
        A file touched but not changed is hashed, not parsed again.
        """
        parsed: list[str] = []

        def parse(text: str) -> ParsedEntries[int]:
            parsed.append(text)
            return parseNumbers(text)

        entries = WatchedEntries(
            {}, self.path, parse, clock=self.clock, runInThread=inline
        )
        os.utime(self.path, ns=(1, 1))
        self.assertEqual(lookup(entries, "alice"), 1111)
        self.assertEqual(len(parsed), 1)

    def test_badLineSkipped(self) -> None:
        """
        A bad line leaves out its entry only, logged once with its line
        number and not its content; the other entries are in use.
        """
        entries = self.watch()
        writePrivateFile(self.path, b"alice:1111\nbob:s3cret-not-a-number\ncarol:3\n")
        self.assertEqual(lookup(entries, "carol"), 3)
        self.assertIsNone(lookup(entries, "bob"))
        self.assertEqual(lookup(entries, "alice"), 1111)
        self.clock.advance(CHECK_INTERVAL)
        lookup(entries, "alice")
        [line] = self.logged()
        self.assertIn("line 2: expected name:number", line)
        self.assertIn(str(self.path), line)
        self.assertNotIn("s3cret", line)

    def test_badLinesAtStartup(self) -> None:
        """
        Bad lines at startup are skipped and logged too: they do not stop
        the other users from logging in.
        """
        self.path.write_text("alice:1111\nbob:oops\n")
        entries = self.watch()
        self.assertEqual(lookup(entries, "alice"), 1111)
        self.assertEqual(len(self.logged()), 1)

    def test_manyBadLinesBounded(self) -> None:
        """
        A file of bad lines logs a bounded number of them.
        """
        self.path.write_text("x\n" * 1000)
        self.watch()
        logged = self.logged()
        self.assertEqual(len(logged), _files.MAX_LOGGED_PROBLEMS + 1)
        self.assertIn("980 more bad lines", logged[-1])

    def test_unreadableKeepsLastGood(self) -> None:
        """
        A file that vanished, or is not UTF-8, leaves the last version in
        use; each is logged once.
        """
        entries = self.watch()
        self.path.unlink()
        for _ in range(3):
            self.assertEqual(lookup(entries, "alice"), 1111)
            self.clock.advance(CHECK_INTERVAL)
        self.path.write_bytes(b"alice:\xff\n")
        for _ in range(3):
            self.assertEqual(lookup(entries, "alice"), 1111)
            self.clock.advance(CHECK_INTERVAL)
        logged = self.logged()
        self.assertEqual(len(logged), 2, logged)
        self.assertIn("cannot be read (No such file or directory)", logged[0])
        self.assertIn("is not UTF-8 text", logged[1])
        self.path.write_text("alice:5\n")
        self.assertEqual(lookup(entries, "alice"), 5)

    def test_missingAtStartup(self) -> None:
        """
        With nothing ever read, a missing file is an error at once.
        """
        self.path.unlink()
        self.assertRaises(OSError, self.watch)

    def test_check(self) -> None:
        """
        L{WatchedEntries.check} reads the file now; a second call joins the
        reading under way.
        """
        thread = QueuedThread()
        entries = self.watch(thread)
        writePrivateFile(self.path, b"alice:7\n")
        first, second = entries.check(), entries.check()
        self.assertNoResult(first)
        self.assertEqual(len(thread.calls), 1)
        thread.runAll()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(lookup(entries, "alice"), 7)

    def test_inMemory(self) -> None:
        """
        Entries given in memory are served as they are.
        """
        entries = WatchedEntries({"alice": 1})
        self.assertEqual((lookup(entries, "alice"), len(entries)), (1, 1))
        self.successResultOf(entries.check())


class ReplaceFileTests(SynchronousTestCase):
    def test_atomicPrivate(self) -> None:
        """
        The new content replaces the file under a new inode, mode 0600, and
        no temporary file is left.
        """
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old\n")
        os.chmod(path, 0o644)
        inode = os.stat(path).st_ino
        writePrivateFile(path, b"new\n")
        self.assertEqual(path.read_text(), "new\n")
        self.assertNotEqual(os.stat(path).st_ino, inode)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(os.listdir(path.parent), [path.name])
