"""Worker logs: what the client already reports, and shutdown races, print no traceback."""

import logging

from kdeconv.cluster import _drop_handled_errors


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, message, None, None)


def test_handled_errors_and_shutdown_heartbeats_are_dropped_other_errors_kept():
    assert not _drop_handled_errors(_record("Failed to communicate with scheduler during heartbeat."))
    assert not _drop_handled_errors(_record("Compute Failed ... InputError('map is truncated')"))
    assert _drop_handled_errors(_record("Compute Failed ... ZeroDivisionError('division by zero')"))
