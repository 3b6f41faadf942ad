"""Raw interaction sources. Each one locates (or downloads) its files and reads them."""

from deepm3.data.sources.base import InteractionSource, file_fingerprint

__all__ = ["InteractionSource", "file_fingerprint"]
