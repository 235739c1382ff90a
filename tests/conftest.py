"""Shared test helpers. Hypothesis profile: deterministic in CI (derandomize) so a red run is
reproducible, with enough examples to find symbology and pricing edge cases."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")
