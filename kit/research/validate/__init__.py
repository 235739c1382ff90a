"""Live vs backtest validation (``kit validate``): a recorded day replayed from the store
through the same desk and rules (:mod:`.replay`), compared decision by decision with every
divergence explained (:mod:`.compare`), and fills measured against the quotes they met, with a
slippage model fitted over many fills that the backtest grid can use as its cost model
(:mod:`.slippage`)."""
