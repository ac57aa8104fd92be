"""The app under gunicorn for bench/feeds.py, plus a bare JSON route to compare with.

The bare route lives here, not in the product: same app, same hooks and
envelope, no auth, no database, no Redis.
"""
from app import create_app
from app.api.common import ok

app = create_app()


@app.get("/bench/bare")
def bare():
    return ok({"bare": True})
