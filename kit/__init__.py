"""Theta Desk: the engines behind the notebooks. ``kit.connect()`` attaches to the desk service."""

__version__ = "0.1.0"


async def connect(*args, **kwargs):
    """Connect to the desk service: see :func:`kit.remote.client.connect` (imported on first use, so
    ``import kit`` stays light for the command line)."""
    from kit.remote.client import connect as _connect

    return await _connect(*args, **kwargs)
