"""HTTP/1.1 as bytes in, objects out: no sockets, no threads, no os."""
