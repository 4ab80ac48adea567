# Source: ruthlessPuppy/infinita_progressus, backend/gunicorn.conf.py
bind = "0.0.0.0:8000"
workers = 4
threads = 8
worker_class = "gthread"
timeout = 120
keepalive = 5
max_requests = 1000
max_requests_jitter = 50
