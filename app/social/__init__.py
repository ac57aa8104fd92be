"""The social graph: follows, follow requests, blocks, and the one visibility
rule (who may see whose media) that every read applies.

Below media and feeds, which ask it; it asks nothing of them.
"""
