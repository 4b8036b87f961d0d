"""Running a command held to files' modes as any user is, root included: the tests of what a server or the warpcore
command does when the OS refuses it a socket or a folder."""

from __future__ import annotations

import os
import sys

# Root passes any file's mode with CAP_DAC_OVERRIDE (and CAP_DAC_READ_SEARCH for folders): without them in its
# bounding set, what it runs is held to the file's mode as any other user is. As another UID it could not run
# this interpreter, which may lie in root's own home.
AS_ANY_USER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, capability, 0, 0, 0):  # PR_CAPBSET_DROP
        sys.exit(f"cannot drop capability {capability}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""
PREFIX = (sys.executable, "-c", AS_ANY_USER) if os.geteuid() == 0 else ()
"""What to put before a command so that it runs held to files' modes."""
