# Source: santhl123/RagChatbot, gunicorn_config.py (log paths under the test's folder).
workers = 3
bind = "0.0.0.0:8000"
timeout = 120
keepalive = 5
errorlog = "{tmp}/logs/gunicorn-error.log"
accesslog = "{tmp}/logs/gunicorn-access.log"
loglevel = "info"
