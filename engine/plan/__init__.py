"""Planning: the recipients CSV streamed row by row into planned messages (number, text,
segments, route) or rejected/skipped rows with their reasons; planning workers for big files."""
