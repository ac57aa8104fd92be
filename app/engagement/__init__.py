"""Engagement: likes, comments, tags, the activity a user receives, and popular.

Below media (an upload records its tags and mentions here), above the social graph.
"""
