"""`shutter demo`: users, a follow graph, photos, likes and comments, through the same
code paths as the API (sign-up, relationships, the upload pipeline, reactions).

Idempotent: users are found by name, photos by an Idempotency-Key of their own,
follows and likes are no-ops when present, and a comment is added once. Running it
twice leaves the same data. Photos are processed in this process too (process_photo
and publish_photo are idempotent, so a worker that also got the chain does no harm),
so the demo is browsable with no worker running; fan-out into followers' feeds runs
here as well.
"""
from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image, ImageDraw
from sqlalchemy import select

from app.accounts.auth import new_client_credentials
from app.accounts.registration import create_user, find_user
from app.engagement import activity, reactions
from app.media import pipeline
from app.social import relationships as social
from models import Client, Comment, Photo, User

DEMO_CLIENT = "shutter demo"
DEMO_REDIRECT_URI = "http://localhost:9999/callback"
CAPTIONS = ["Morning light #sunrise", "Coffee first #coffee", "On the road #travel", "Weekend #friends",
            "City lights #night", "Green everywhere #nature"]
COMMENTS = ["Beautiful!", "Love this", "Where is this?", "So good", "Wow #nofilter"]


@dataclass
class DemoResult:
    usernames: list[str] = field(default_factory=list)
    password: str = ""
    client_id: str = ""
    client_secret: str = ""
    photos: int = 0
    follows: int = 0
    likes: int = 0
    comments: int = 0


def demo_image(seed: int, size: int = 640) -> bytes:
    """A deterministic JPEG: a two-colour gradient and a few shapes."""
    rng = random.Random(seed)
    top, bottom = (tuple(rng.randrange(40, 230) for _ in range(3)) for _ in range(2))
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        t = y / size
        draw.line([(0, y), (size, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(4):
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(20, size // 4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


class DemoSeeder:
    """Receives the services container (app.services.Services): it uses what the routes use."""

    def __init__(self, services, users: int = 8, photos_per_user: int = 3, password: str = "shutter-demo") -> None:
        self.services = services
        self.user_count = users
        self.photos_per_user = photos_per_user
        self.password = password
        self.result = DemoResult(password=password)

    def steps(self) -> dict[str, int]:
        """The work each stage does, for a progress bar."""
        return {"users": self.user_count, "follows": self.user_count,
                "photos": self.user_count * self.photos_per_user, "reactions": self.user_count}

    def run(self) -> Iterator[tuple[str, int]]:
        """Yields (stage, units done) as it goes; self.result holds the outcome."""
        db = self.services.db
        with db.session() as session:
            users = []
            for n in range(1, self.user_count + 1):
                users.append(self._user(session, f"demo{n:02d}"))
                yield "users", 1
            self.result.usernames = [u.username for u in users]
            self._client(session, users[0])
            for index, user in enumerate(users):
                self._follows(session, user, users, index)
                yield "follows", 1
            photos: list[Photo] = []
            for index, user in enumerate(users):
                for n in range(self.photos_per_user):
                    photos.append(self._photo(session, user, index * 100 + n))
                    yield "photos", 1
            for index, user in enumerate(users):
                self._reactions(session, user, photos, index)
                yield "reactions", 1

    def _user(self, session, username: str) -> User:
        user = find_user(session, username)
        if user is None:
            user = create_user(session, self.services.passwords, username, f"{username}@demo.shutter.invalid",
                               self.password, full_name=f"Demo {username[4:]}")
        return user

    def _client(self, session, owner: User) -> None:
        client = session.scalar(select(Client).where(Client.owner_id == owner.id, Client.name == DEMO_CLIENT))
        if client is None:
            client_id, secret = new_client_credentials()
            client = Client(client_id=client_id, client_secret=secret, owner_id=owner.id, name=DEMO_CLIENT,
                            redirect_uri=DEMO_REDIRECT_URI)
            session.add(client)
            session.commit()
        self.result.client_id, self.result.client_secret = client.client_id, client.client_secret

    def _follows(self, session, user: User, users: list[User], index: int) -> None:
        """Each follows the next three (a ring): everyone has followers and a feed."""
        for step in (1, 2, 3):
            target = users[(index + step) % len(users)]
            if target.id == user.id:
                continue
            change = social.apply(session, user, target, "follow")
            activity.follow_changed(session, user.id, target.id, change)
            self.services.feeds.apply_change(session, change)
            session.commit()
            self.result.follows += bool(change.follow_started)

    def _photo(self, session, user: User, seed: int) -> Photo:
        s = self.services
        fields = pipeline.UploadFields(caption=CAPTIONS[seed % len(CAPTIONS)], idempotency_key=f"demo-{seed}")
        photo, created = pipeline.accept_upload(session, s.storage, s.celery, user, demo_image(seed), fields,
                                                s.settings.max_image_pixels)
        photo_id = photo.id
        session.commit()  # nothing held (on SQLite a transaction holds the write lock) while the steps run
        # Browsable without a worker: the chain's steps here too (each is a no-op once done),
        # each in a session of its own as the tasks have.
        with s.db.session() as step:
            pipeline.process_photo(step, s.storage, photo_id)
        with s.db.session() as step:
            published = pipeline.publish_photo(step, s.celery, photo_id, feeds=s.feeds)
        if published:
            s.feeds.fan_out_all(photo_id)
        self.result.photos += created
        photo = session.get(Photo, photo_id)
        session.refresh(photo)  # sessions keep objects after commit (expire_on_commit=False): its status now
        session.commit()
        return photo

    def _reactions(self, session, user: User, photos: list[Photo], index: int) -> None:
        """Likes the photos of the next user and comments on one of them."""
        theirs = [p for p in photos if p.user_id != user.id and p.status == "ready"]
        if not theirs:
            return
        owner = theirs[(index * self.photos_per_user) % len(theirs)].user_id
        for photo in (p for p in theirs if p.user_id == owner):
            self.result.likes += reactions.like(session, user.id, photo)
        target = next(p for p in theirs if p.user_id == owner)
        text = COMMENTS[index % len(COMMENTS)]
        exists = session.scalar(select(Comment.id).where(Comment.photo_id == target.id, Comment.user_id == user.id,
                                                         Comment.text == text))
        if exists is None:
            reactions.add_comment(session, user.id, target, text)
            self.result.comments += 1
