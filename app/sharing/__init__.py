"""Linked Twitter and Facebook accounts, and sharing a ready photo to them.

    crypto.py    TokenCipher: the linked accounts' tokens, encrypted at rest (MultiFernet)
    networks.py  Twitter (OAuth 1.0a, v1.1 REST) and Facebook (OAuth 2, Graph): HTTP only,
                 every failure named (Revoked, RateLimited, Unavailable, NoAnswer, Refused)
    linking.py   LinkedAccounts: connect (the OAuth dance, bound to the user by a single-use
                 state in Redis), callback, list, unlink
    service.py   Sharing: post a photo at most once per network (the shares table)
"""
