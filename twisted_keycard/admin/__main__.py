"""
C{python -m twisted_keycard.admin}: the C{keycard} command.
"""

from twisted_keycard.admin._cli import entry

entry()
