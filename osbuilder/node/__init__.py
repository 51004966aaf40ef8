"""The node agent (`osbuilder-agent`), installed in every image. Standard library plus
Debian python3-* packages only."""
