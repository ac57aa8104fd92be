"""The HTTP edge: one blueprint per API area. A route parses its arguments, calls
one service and serializes what it returns; app/api/common.py holds what they share."""
