"""What answers cost, and how much the assistant may answer whom.

:mod:`~parley.usage.metering` adds up an answer's tokens round by round (counted by its
model's server, or estimated where it sent no counts) and stores them as a
:class:`~parley.models.Usage` row with its cost; :mod:`~parley.usage.quotas` takes a
question from the asker's quotas before the model is called.
"""
