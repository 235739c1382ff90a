"""The email sink: one message per batch over SMTP, configured from ``KIT_SMTP_*``."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from email.message import EmailMessage
from functools import partial

from kit.core import config
from kit.core.model import Severity
from kit.engine.records import RANK, SEVERITIES, AlertRecord, SinkRecord, record_to_json
from kit.sinks.base import ny_time, with_retries


@dataclass(frozen=True)
class EmailSink:
    """One email per batch over SMTP, sent from a worker thread so the loop never blocks.

    Transient failures (refused, disconnected, timed out) are retried after each of
    ``retry_delays_s``; the password is kept out of repr and logs.
    """

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    min_severity: Severity = Severity.CRITICAL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    subject_prefix: str = "[theta-desk]"
    _: KW_ONLY
    audit: bool = False
    timeout_s: float = 10.0
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 15.0)

    @property
    def name(self) -> str:
        return f"email:{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmailSink | None:
        """Configure from ``KIT_SMTP_*``; None when ``KIT_SMTP_HOST`` is unset."""

        def get(name: str) -> str | None:
            return config.env(name, environ=env)

        host, sender, to = get("KIT_SMTP_HOST"), get("KIT_SMTP_FROM"), get("KIT_SMTP_TO")
        if not host:
            return None
        if missing := [k for k, v in (("KIT_SMTP_FROM", sender), ("KIT_SMTP_TO", to)) if not v]:
            raise ValueError(f"KIT_SMTP_HOST is set but {', '.join(missing)} is not")
        starttls = config.env_bool("KIT_SMTP_STARTTLS", False, environ=env)
        password = config.env("KIT_SMTP_PASSWORD", environ=env, strip=False)
        return cls(
            host,
            config.env_int("KIT_SMTP_PORT", 587 if starttls else 25, environ=env),
            sender or "",
            [r.strip() for r in (to or "").split(",") if r.strip()],
            username=get("KIT_SMTP_USER"),
            password=password,  # as given: a password may begin or end with a space
            starttls=starttls,
        )

    def message(self, records: Sequence[SinkRecord]) -> EmailMessage:
        """The email for one batch: the subject says how many and how bad, the body the inputs."""
        alerts = [r.alert for r in records if isinstance(r, AlertRecord)]
        if alerts:
            worst = SEVERITIES[max(RANK[a.severity] for a in alerts)]
            summary = f"{len(alerts)} alert{'s' * (len(alerts) != 1)}, worst {worst.value}"
        else:
            summary = f"{len(records)} action(s)"
        lines = []
        for r in records:
            d = record_to_json(r)
            what = d.get("severity") or f"ACTION {d['kind']}", d["rule"], d["position_id"] or "-"
            text = d.get("message", d.get("reason"))
            lines.append(f"{ny_time(d['ts_ns'])} ET  {'  '.join(what)}: {text}")
            lines += [f"    {k} = {v}" for k, v in d["inputs"].items()]
        msg = EmailMessage()
        msg["Subject"] = f"{self.subject_prefix} {summary}"
        msg["From"], msg["To"] = self.sender, ", ".join(self.recipients)
        msg.set_content("\n".join(lines) + "\n")
        return msg

    async def send(self, records: Sequence[SinkRecord]) -> None:
        msg = self.message(records)
        transient = (ConnectionError, TimeoutError, smtplib.SMTPServerDisconnected)
        deliver = partial(asyncio.to_thread, self._deliver, msg)
        await with_retries(self.name, deliver, transient, self.retry_delays_s)

    def _deliver(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)
