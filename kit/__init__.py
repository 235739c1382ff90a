"""Theta Desk: engines for option premium sellers, shared by the notebooks and the desk service."""

__version__ = "0.1.0"
