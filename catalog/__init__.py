"""catalog: turn a photo library into a searchable SQLite catalogue."""

__version__ = "0.1.0"
