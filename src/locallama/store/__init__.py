"""The model store: names, manifests, blobs, Modelfiles and model sources."""

from locallama.store.names import ModelName, parse_name
from locallama.store.store import ModelEntry, ModelRecord, Store

__all__ = ["ModelEntry", "ModelName", "ModelRecord", "Store", "parse_name"]
