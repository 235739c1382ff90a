"""The options history: one Parquet dataset of chain snapshots at a fixed interval per underlying
and session, Hive-partitioned ``underlying=SPX/date=YYYY-MM-DD/part-0.parquet``.

:mod:`~kit.research.history.schema` defines the columns and the readers every consumer uses
(the backtest grid included); the builders (simulator, ThetaData, the desk's store) only write
days through :func:`~kit.research.history.schema.write_day`.
"""
