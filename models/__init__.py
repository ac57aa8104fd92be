"""SQLAlchemy models. The schema itself is created only by Alembic (migrations/)."""
from .base import Base, utcnow
from .db import Database, begin_read, begin_write, make_engine
from .media import (Activity, Comment, Like, Location, Outbox, Photo, PhotoTag, Subscription, SubscriptionDelivery,
                    Tag)
from .sharing import Share
from .users import (AccessToken, AuthorizationCode, Block, Client, Device, Follow, LinkedAccount, MutedNotification,
                    User)

__all__ = [
    "Base", "utcnow", "Database", "begin_read", "begin_write", "make_engine",
    "User", "Client", "AccessToken", "AuthorizationCode", "Follow", "Block", "Device", "LinkedAccount",
    "MutedNotification", "Photo", "Like", "Comment", "Tag", "PhotoTag", "Location", "Activity", "Subscription",
    "SubscriptionDelivery", "Outbox", "Share",
]
