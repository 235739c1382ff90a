"""Operations: Prometheus metrics and health endpoints of the desk service (``kit serve
--metrics-port``). :mod:`kit.ops.metrics` holds every metric; :mod:`kit.ops.server` serves
them with ``/healthz`` and ``/readyz`` on 127.0.0.1."""
