"""Publishing built images to clouds (`osbuilder publish`)."""
