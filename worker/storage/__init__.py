"""Where items' inputs are read and results written: local directories or Azure Blob Storage."""

from jobkit_worker.storage.base import Store, open_store

__all__ = ["Store", "open_store"]
