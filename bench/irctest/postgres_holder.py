"""
Hold one embedded Postgres (pgserver) for a whole irctest run.

C{python postgres_holder.py DIR DSN_FILE}: start Postgres in C{DIR}, write
its connection string to C{DSN_FILE}, and keep it running until this
process is told to stop (SIGTERM or SIGINT); then Postgres stops with it.
Run by C{run.sh} with the lairchat venv's Python (pgserver is a lairchat
dependency); the controller makes a fresh database per test on it.
"""

import signal
import sys
import threading

import pgserver


def main(directory: str, dsn_file: str) -> None:
    """Start Postgres, publish its DSN, wait for a signal, stop it."""
    server = pgserver.get_server(directory, cleanup_mode="stop")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open(dsn_file + ".tmp", "w") as out:
        out.write(server.get_uri())
    import os

    os.replace(dsn_file + ".tmp", dsn_file)
    while not stop.wait(1.0):
        pass
    server.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
