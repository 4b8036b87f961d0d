"""The signals that stop the server, and what they do until its event loop takes them over (cli.serve): from the
first line of the command on, before its modules are imported, which on a busy machine takes seconds.

SIGHUP is one of them (a closed terminal, a supervisor's stop): its default would end the process at once, with no
drain. Every other signal keeps its default action: SIGQUIT ends the process at once, without the drain, as the
"stop now" operators send it for; SIGUSR1 and SIGUSR2 mean nothing to the server, and end it as their default does."""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_when_stopped() -> None:
    """Until the event loop takes the signals over, a stop signal exits with status 0, stopped as asked, and with
    nothing printed: Python's own SIGINT handler would print a KeyboardInterrupt traceback from whatever import it
    cut short, and SIGTERM's default would end the process with 143, as a crash."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit)


def _exit(signum: int, frame: FrameType | None) -> None:
    """Raised where the main thread is, so that what it was writing (the embedded model's file, as it is assembled)
    is removed on the way out."""
    raise SystemExit(0)
