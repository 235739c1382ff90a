"""Research: options history datasets (``kit.research.history``) and the backtest grid built on
them. Engines only; the CLI and notebooks drive them."""
