"""A slow, obvious scalar Black-Scholes-Merton, written out per textbook for calls and puts
separately, so the vectorised engine is tested against something that shares none of its tricks."""

import math


def N(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def n(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def bsm(S: float, K: float, T: float, r: float, q: float, sigma: float, is_call: bool) -> dict:
    d1 = (math.log(S / K) + (r - q + 0.5 * sigma**2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    eq, er = math.exp(-q * T), math.exp(-r * T)
    gamma = eq * n(d1) / (S * sigma * math.sqrt(T))
    vega = S * eq * n(d1) * math.sqrt(T)
    vanna = -eq * n(d1) * d2 / sigma
    vomma = vega * d1 * d2 / sigma
    common_charm = (
        eq * n(d1) * (2 * (r - q) * T - d2 * sigma * math.sqrt(T)) / (2 * T * sigma * math.sqrt(T))
    )
    decay = -S * eq * n(d1) * sigma / (2 * math.sqrt(T))
    if is_call:
        return {
            "price": S * eq * N(d1) - K * er * N(d2),
            "delta": eq * N(d1),
            "theta": decay - r * K * er * N(d2) + q * S * eq * N(d1),
            "rho": K * T * er * N(d2),
            "charm": q * eq * N(d1) - common_charm,
            "gamma": gamma,
            "vega": vega,
            "vanna": vanna,
            "vomma": vomma,
        }
    return {
        "price": K * er * N(-d2) - S * eq * N(-d1),
        "delta": -eq * N(-d1),
        "theta": decay + r * K * er * N(-d2) - q * S * eq * N(-d1),
        "rho": -K * T * er * N(-d2),
        "charm": -q * eq * N(-d1) - common_charm,
        "gamma": gamma,
        "vega": vega,
        "vanna": vanna,
        "vomma": vomma,
    }
