"""The worker: producer (claims), executor (runs), completer (writes), heartbeat, lifecycle."""
