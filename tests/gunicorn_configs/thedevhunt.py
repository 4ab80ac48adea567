# Source: Erhan1706/thedevhunt, config/gunicorn.conf.py (log paths under the test's folder).
bind = "0.0.0.0:8000"
workers = 4
accesslog = "{tmp}/logs/gunicorn/access.log"
errorlog = "{tmp}/logs/gunicorn/error.log"
loglevel = "info"
