"""Photos: upload validation and imaging, storage (local | S3), the pipeline
that processes a photo through the outbox, and the hydration of v1 media objects.

Media may record engagement (an upload's tags and mentions) and ask the social
graph; it never reads feeds (feeds read media).
"""
