"""Where alerts and audit records go: console, JSON lines, email, webhook.

Each sink is a small class satisfying :class:`kit.engine.alerts.AlertSink` (``name``,
``min_severity``, ``audit`` and ``async send(records)``); the alert manager feeds each from its own
bounded queue, so a slow or failing sink never delays the desk. Import the one you need
(``from kit.sinks.email import EmailSink``): each pulls in only its own transport.
"""
