"""Hypothesis strategies for domain records, shared by the test modules."""

from datetime import date

from hypothesis import strategies as st

from kit.core.model import CRYPTO_CONTRACT_SIZE, Contract, Right

# OCC/DxLink carry a two-digit year that strptime maps to 1969-2068: stay inside it.
expiries = st.dates(min_value=date(2000, 1, 1), max_value=date(2068, 12, 31))
roots = st.from_regex(r"[A-Z][A-Z0-9]{0,5}", fullmatch=True).filter(
    lambda r: r not in CRYPTO_CONTRACT_SIZE
)
strike_milli = st.integers(min_value=1, max_value=99_999_999)  # 8 OCC digits
rights = st.sampled_from(list(Right))


@st.composite
def us_contracts(draw) -> Contract:
    return Contract(draw(roots), draw(expiries), draw(strike_milli) / 1000, draw(rights))


@st.composite
def crypto_contracts(draw) -> Contract:
    coin = draw(st.sampled_from(sorted(CRYPTO_CONTRACT_SIZE)))
    return Contract(coin, draw(expiries), draw(strike_milli) / 1000, draw(rights))
