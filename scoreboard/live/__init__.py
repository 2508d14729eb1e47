"""Live board: one pub/sub listener per process relays broadcasts to that process's sockets."""
