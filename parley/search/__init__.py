"""Members' search of the messages of their rooms, with each database's own full-text index."""
