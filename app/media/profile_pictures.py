"""Profile pictures: a 150×150 square, metadata stripped like every served image."""
from __future__ import annotations

import secrets

from app.media import imaging
from app.media.storage import Storage


class ProfilePictures:
    def __init__(self, storage: Storage, max_pixels: int) -> None:
        self.storage = storage
        self.max_pixels = max_pixels  # MAX_IMAGE_PIXELS

    def store(self, user_id: int, data: bytes) -> str:
        """Validate, crop and store; returns the storage key. Raises imaging.ImageRejected."""
        imaging.inspect_upload(data, self.max_pixels)
        square = imaging.make_derivatives(data).derivatives[imaging.THUMBNAIL]
        # A fresh name per picture: CDNs cache old URLs for a year.
        key = f"profiles/{user_id}/{secrets.token_hex(8)}.jpg"
        self.storage.put(key, square.data, square.content_type)
        return key
