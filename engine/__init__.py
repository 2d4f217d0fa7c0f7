"""dispatch: a bulk SMS campaign engine."""

__version__ = "0.1.0"
