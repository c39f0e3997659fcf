"""Moved: ``check-log`` lives in ``kvcalc.engines.startup_log`` (the checks, per engine version)
and ``kvcalc.engines.loglines`` (every line form the engines print). Kept so older imports work."""

from kvcalc.engines.loglines import LogReading, read_log  # noqa: F401
from kvcalc.engines.startup_log import MAX_LOG_BYTES, Check, LogCheck, check_log, resolve_log_model  # noqa: F401
