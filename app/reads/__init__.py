"""Warm reads: every hot read but the feed's (app.feeds.rendered) in one Redis round trip.

Each read here is a Lua script over what Redis holds (the token, the rendered
media and users of app.feeds.rendered, the social graph of app.social.graph),
answering rendered JSON or a miss; on a miss the route reads the database as
before and calls the matching `warm_*` to store what it used.
"""
