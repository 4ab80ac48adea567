# Source: LoveJustice/tinyhands, application/bin/gunicorn_config.py (log paths under the
# test's folder).
bind = "0.0.0.0:9001"
loglevel = "INFO"
workers = "3"
reload = True

errorlog = "{tmp}/log/gunicorn_error.log"
accesslog = "{tmp}/log/gunicorn_access.log"
