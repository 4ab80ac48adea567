"""prefork: a prefork HTTP/1.1 server for WSGI applications.

A master process binds the listening sockets and supervises N worker processes;
each worker runs an accept loop and a thread pool that calls the WSGI app.
"""

__version__ = "0.1.0"
