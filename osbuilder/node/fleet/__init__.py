"""Fleet upgrades from Kubernetes: the OSUpgrade controller (server nodes) and the node
watcher (every node), talking through annotations on each node's own Node object."""
