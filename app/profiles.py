"""Profile pictures: a 150×150 square, metadata stripped like every served image."""
from __future__ import annotations

import secrets

from app import imaging
from app.services import services


def store_profile_picture(user_id: int, data: bytes) -> str:
    """Validate, crop and store; returns the storage key. Raises imaging.ImageRejected."""
    imaging.inspect_upload(data, services.settings.max_image_pixels)
    square = imaging.make_derivatives(data).derivatives[imaging.THUMBNAIL]
    # A fresh name per picture: CDNs cache old URLs for a year.
    key = f"profiles/{user_id}/{secrets.token_hex(8)}.jpg"
    services.storage.put(key, square.data, square.content_type)
    return key
