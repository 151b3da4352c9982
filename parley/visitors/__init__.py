"""Visitors who are not logged in, and the embedded chat they (and users) talk in."""
