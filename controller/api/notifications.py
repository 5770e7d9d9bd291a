"""Where a CanaryRelease reports its milestones: Slack-compatible or generic JSON webhooks.

Webhook URLs are credentials (anyone holding a Slack incoming-webhook URL can
post to the channel), so the spec never holds one: it names a key of a Secret
in the release's own namespace, and the controller reads it when it sends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from controller.api.base import SpecModel

NotificationKind = Literal["started", "step", "promotion", "rollback", "gate", "warning"]
NOTIFICATION_KINDS: tuple[NotificationKind, ...] = (
    "started",
    "step",
    "promotion",
    "rollback",
    "gate",
    "warning",
)
# Unless a notifier lists its own: the milestones, not every Warning Event.
DEFAULT_KINDS: frozenset[NotificationKind] = frozenset(
    {"started", "step", "promotion", "rollback", "gate"}
)


class SecretKeyRef(SpecModel):
    """One key of a Secret in the CanaryRelease's namespace (never another namespace)."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(default="url", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class Notifier(SpecModel):
    """One destination for a release's milestones."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    type: Literal["slack", "webhook"] = Field(
        default="webhook",
        description="slack: Slack's incoming-webhook JSON (Mattermost and Rocket.Chat accept "
        "it too); webhook: the controller's own JSON document",
    )
    url_secret_ref: SecretKeyRef = Field(description="the Secret key holding the webhook URL")
    events: list[NotificationKind] | None = Field(
        default=None,
        max_length=len(NOTIFICATION_KINDS),
        description="which milestones to send: " + ", ".join(NOTIFICATION_KINDS) + " (when "
        "unset, all but warning, which covers every other Warning Event)",
    )

    def wants(self, kind: NotificationKind) -> bool:
        return kind in DEFAULT_KINDS if self.events is None else kind in self.events


def _unique_names(notifiers: list[Notifier]) -> list[Notifier]:
    names = [n.name for n in notifiers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"notifier names must be unique, repeated: {', '.join(dupes)}")
    return notifiers


Notifications = Annotated[
    list[Notifier],
    Field(
        default_factory=list,
        max_length=10,
        description="Slack-compatible or JSON webhooks told about starts, steps, "
        "promotions, rollbacks and blocked gates",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
    AfterValidator(_unique_names),
]
