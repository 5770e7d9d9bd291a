"""The backup gate: is there evidence of a backup younger than the allowed age?

The evidence comes from one source (a CronJob's last successful run, a
Job's completion, the newest ready VolumeSnapshot, or a SQL query); the
adapter finds the time, this judge compares it. No evidence at all fails:
"we could not find a backup" must never read as "the backup is fine".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.api.durations import format_duration
from controller.gates.checks import BACKUP, GateCheck, failed, passed


def judge_backup(
    last: datetime | None, source: str, max_age: timedelta, now: datetime
) -> GateCheck:
    if last is None:
        return failed(BACKUP, "NoBackup", f"no completed backup found ({source})")
    if last.tzinfo is None:
        return failed(BACKUP, "BackupTimeInvalid", f"{source} returned a time without a zone")
    age = now - last
    evidence = [f"{source}: last backup at {last.isoformat()}"]
    if age > max_age:
        return failed(
            BACKUP,
            "BackupTooOld",
            f"last backup is {format_duration(age)} old (max {format_duration(max_age)}; {source})",
            evidence,
        )
    return passed(
        BACKUP, f"last backup is {format_duration(max(age, timedelta(0)))} old ({source})", evidence
    )
