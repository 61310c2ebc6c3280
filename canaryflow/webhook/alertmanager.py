"""Alertmanager webhook payload -> rollback requests. Pure functions, no I/O.

Alertmanager posts one notification per alert group (``version: "4"``)::

    {"receiver": ..., "status": "firing", "groupKey": ..., "alerts": [
        {"status": "firing", "labels": {...}, "annotations": {...}, "startsAt": ..., "fingerprint": ...}]}

Each alert is judged on its own. It asks for a rollback when it is *firing*, its ``alertname`` is in
the allow-list, and it carries a ``service`` label (a release spec name) and an ``environment`` label
(``staging`` / ``production``); anything else is ignored with the reason.

One rollback per firing episode: Alertmanager resends a firing alert every ``repeat_interval`` (and
the whole group whenever it changes) with the same ``fingerprint`` (a hash of its labels) and the
same ``startsAt``; the idempotency key is made of both, so resends find the run already started,
while the same alert firing again later (a new ``startsAt``) starts a new rollback.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from canaryflow.spec import NAME_PATTERN, Environment
from canaryflow.webhook.mapping import UnmappablePayload
from canaryflow.webhook.payload import quoted

FINGERPRINT = re.compile(r"^[0-9a-fA-F]{1,64}$")
#: RFC 3339 as Alertmanager writes it (Go's time format): digits, separators, zone.
STARTS_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T[0-9:.]{5,30}(Z|[+-]\d{2}:\d{2})$")
SERVICE = re.compile(NAME_PATTERN)
MAX_DETAIL = 500
#: Alerts one notification may carry: each costs a release lookup and a run start (Alertmanager's
#: ``max_alerts`` in webhook_config truncates a group to fit).
DEFAULT_MAX_ALERTS = 100


@dataclass(frozen=True)
class RollbackRequest:
    alertname: str
    service: str
    environment: str
    fingerprint: str
    starts_at: str
    detail: str

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.fingerprint, self.starts_at)


@dataclass(frozen=True)
class IgnoredAlert:
    alertname: str | None
    fingerprint: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"alertname": self.alertname, "fingerprint": self.fingerprint, "reason": self.reason}


def idempotency_key(fingerprint: str, starts_at: str) -> str:
    """Stable across resends of one firing episode, different for the next episode."""
    return f"alertmanager:{fingerprint.lower()}:{starts_at}"


def labels_fingerprint(labels: dict[str, Any]) -> str:
    """A stand-in for Alertmanager's fingerprint when a sender omits it: a hash of the label set."""
    text = json.dumps(sorted((str(k), str(v)) for k, v in labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _detail(alertname: str, annotations: Any) -> str:
    annotations = annotations if isinstance(annotations, dict) else {}
    summary = _text(annotations.get("summary")) or _text(annotations.get("description"))
    detail = f"{alertname}: {summary}" if summary else alertname
    return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 1] + "…"


def map_alert(alert: Any, *, allowed: Iterable[str]) -> RollbackRequest | IgnoredAlert:
    if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
        return IgnoredAlert(None, None, "alert is not an object with labels")
    labels = alert["labels"]
    alertname = _text(labels.get("alertname"))
    raw_fingerprint = alert.get("fingerprint")
    if raw_fingerprint is None:
        fingerprint = labels_fingerprint(labels)
    elif isinstance(raw_fingerprint, str) and FINGERPRINT.match(raw_fingerprint):
        fingerprint = raw_fingerprint
    else:
        return IgnoredAlert(alertname, None, "fingerprint is not hexadecimal")

    def ignored(reason: str) -> IgnoredAlert:
        return IgnoredAlert(alertname, fingerprint, reason)

    status = alert.get("status")
    if status != "firing":
        return ignored(f"status {quoted(status)} (only firing alerts start a rollback)")
    if alertname is None:
        return ignored("no alertname label")
    if alertname not in set(allowed):
        return ignored(f"alert {quoted(alertname)} is not in the rollback allow-list")
    service, environment = labels.get("service"), labels.get("environment")
    if service is None or environment is None:
        missing = [name for name, value in (("service", service), ("environment", environment)) if value is None]
        return ignored(f"no {' and no '.join(missing)} label")
    if not isinstance(service, str) or not SERVICE.match(service) or len(service) > 63:
        return ignored("service label is not a service name")
    if not isinstance(environment, str) or environment not in {e.value for e in Environment}:
        return ignored(f"environment label must be one of {sorted(e.value for e in Environment)}")
    starts_at = alert.get("startsAt")
    if not isinstance(starts_at, str) or not STARTS_AT.match(starts_at):
        return ignored("no RFC 3339 startsAt (needed to tell firing episodes apart)")
    return RollbackRequest(alertname=alertname, service=service, environment=environment,
                           fingerprint=fingerprint, starts_at=starts_at,
                           detail=_detail(alertname, alert.get("annotations")))


def map_alerts(payload: dict[str, Any], *, allowed: Iterable[str],
               max_alerts: int = DEFAULT_MAX_ALERTS) -> list[RollbackRequest | IgnoredAlert]:
    """Every alert of the notification, mapped; raises :class:`UnmappablePayload` without an
    ``alerts`` list or with more than ``max_alerts``. Two alerts with one idempotency key (a sender
    repeating itself) map once."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise UnmappablePayload("payload has no alerts list", fields=("alerts",))
    if len(alerts) > max_alerts:
        raise UnmappablePayload(f"{len(alerts)} alerts in one notification, at most {max_alerts} are taken "
                                "(set max_alerts in Alertmanager's webhook_config)", fields=("alerts",))
    allowed = frozenset(allowed)
    mapped: list[RollbackRequest | IgnoredAlert] = []
    keys: set[str] = set()
    for alert in alerts:
        result = map_alert(alert, allowed=allowed)
        if isinstance(result, RollbackRequest):
            if result.idempotency_key in keys:
                continue
            keys.add(result.idempotency_key)
        mapped.append(result)
    return mapped
