"""ipywidgets + bqplot components shared by the notebooks; ``await monitor()`` is the live
monitor attached to the desk service."""

from kit.ui.monitor import Monitor, monitor

__all__ = ["Monitor", "monitor"]
