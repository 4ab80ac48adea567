# Source: lacros-tropos/larda, http_server/gunicorn_config.py (log paths under the test's folder).
bind = '127.0.0.1:7979'
errorlog = '{tmp}/gunicorn_error.log'
accesslog = '{tmp}/gunicorn_access.log'
workers = 6
keepalive = 15
timeout = 600
