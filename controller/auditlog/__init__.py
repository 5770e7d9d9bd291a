"""Audit-log anomaly detection: pure statistics over counts of audit events per action.

No I/O here: the providers in controller/adapters fetch an `AuditSample` for an
`AuditPlan`, and `detection.detect` turns it into an `AuditReport` the engine
acts on. The package exports only the plain records, so importing them (as the
engine does) does not load scipy; import `detect` from `.detection`.
"""

from controller.auditlog.planning import plan_audit
from controller.auditlog.reports import ActionFinding, AuditReport
from controller.auditlog.samples import AuditPlan, AuditSample

__all__ = ["ActionFinding", "AuditPlan", "AuditReport", "AuditSample", "plan_audit"]
