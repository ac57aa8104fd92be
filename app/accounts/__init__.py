"""Accounts: passwords, access tokens and OAuth clients, and presence.

The bottom domain: every other one may read who a user is; accounts read none of them.
"""
