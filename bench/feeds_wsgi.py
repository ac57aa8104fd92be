"""The app under gunicorn for bench/feeds.py, plus routes to compare with.

They live here, not in the product: the same app, hooks and envelope.
`/bench/bare` has no auth, no database, no Redis; `/bench/authed` only
authenticates the access token (one Redis lookup) and answers a constant,
which shows what authentication alone costs beside the bare route;
`/bench/large` answers a constant body the size of a 20-item feed page
(~24 KB), which shows what writing that many bytes costs.
"""
from flask import current_app, g

from app import create_app
from app.api.common import ok, require_token

app = create_app()


@app.get("/bench/bare")
def bare():
    return ok({"bare": True})


@app.get("/bench/authed")
@require_token()
def authed():
    return ok({"user": str(g.token.user_id)})


LARGE = '{"meta":{"code":200},"data":[' + ",".join(['{"filler":"' + "x" * 1180 + '"}'] * 20) + '],"pagination":{}}'


@app.get("/bench/large")
def large():
    return current_app.response_class(LARGE, mimetype="application/json")
