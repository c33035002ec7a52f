"""The gateway: every RPC of the suite over HTTP/JSON (the Connect protocol), and the console."""
