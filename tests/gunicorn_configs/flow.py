# Source: Windfarer/flow, gunicorn.py (paths under the test's folder).
bind = "127.0.0.1:20010"
workers = 4
accesslog = "{tmp}/gunicorn.access.log"
errorlog = "{tmp}/gunicorn.error.log"
pidfile = "{tmp}/gunicorn.pid"
