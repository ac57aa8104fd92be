"""Making an account: the API's sign-up and the operators' `shutter create-user` and `demo`."""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.platform import metrics
from app.platform.changes import user_indexed
from models import User

USERNAME = re.compile(r"\A[A-Za-z0-9._]{1,30}\Z")  # \Z: "$" would let a trailing newline in


class AccountTaken(Exception):
    """The username or the email belongs to someone already."""


def create_user(session: Session, passwords, username: str, email: str, password: str,
                full_name: str = "", private: bool = False) -> User:
    """A new user, committed (and queued for user search). Raises AccountTaken."""
    user = User(username=username, username_key=username.lower(), email=email, email_key=email.lower(),
                password_hash=passwords.hash(password), full_name=full_name, is_private=private)
    session.add(user)
    try:
        session.flush()
        user_indexed(session, user.id)  # user search finds them once this commits
        metrics.count_after_commit(session, metrics.SIGNUPS)
        session.commit()
    except IntegrityError:
        session.rollback()
        taken = session.scalar(select(User.id).where(User.username_key == username.lower()))
        raise AccountTaken("This username is taken." if taken else "This email is already registered.") from None
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username_key == username.lower()))
