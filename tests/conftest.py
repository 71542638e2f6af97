"""
pytest runs the tests as trial does: inside a directory of their own,
C{_trial_temp.pytest} at the top of the checkout, emptied at the start of
every run, so that the directories C{TestCase.mktemp} makes (named after
each test) stay out of the checkout and do not pile up from run to run.
C{KEYCARD_TEST_TEMP} names another directory, for a second run at the
same time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TEMP = Path(
    os.environ.get("KEYCARD_TEST_TEMP")
    or Path(__file__).resolve().parent.parent / "_trial_temp.pytest"
)


def pytest_configure(config: pytest.Config) -> None:
    # Paths given to --ignore and --ignore-glob are read against the
    # directory pytest was started in, not the one the tests run in.
    for option in ("ignore", "ignore_glob"):
        paths = getattr(config.option, option, None)
        if paths:
            setattr(config.option, option, [os.path.abspath(p) for p in paths])
    shutil.rmtree(TEMP, ignore_errors=True)
    TEMP.mkdir()
    os.chdir(TEMP)
