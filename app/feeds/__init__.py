"""What a user reads: home feeds (FeedManager: fan-out on write into Redis),
the rendered warm read (one Lua round trip), and the activity feed's objects.

The top domain: it reads media, engagement and the social graph; nothing below reads it.
"""
