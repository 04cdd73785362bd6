"""Where items' inputs are read and results written: local directories or Azure Blob Storage."""

from worker.storage.base import Store, check_name, open_store

__all__ = ["Store", "check_name", "open_store"]
