"""Audit-log anomaly detection: pure statistics over counts of audit events per action.

No I/O here: the providers in controller/adapters fetch an `AuditSample` for an
`AuditPlan`, and `detect` turns it into an `AuditReport` the engine acts on.
"""

from controller.auditlog.detection import detect
from controller.auditlog.planning import plan_audit
from controller.auditlog.reports import ActionFinding, AuditReport
from controller.auditlog.samples import AuditPlan, AuditSample

__all__ = ["ActionFinding", "AuditPlan", "AuditReport", "AuditSample", "detect", "plan_audit"]
