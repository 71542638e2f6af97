"""
The C{keycard} command: the command line that prints, over operations that
return values.
"""

from twisted_keycard.admin._cli import entry, main

__all__ = ["entry", "main"]
