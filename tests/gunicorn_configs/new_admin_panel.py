# Source: kamartem/new_admin_panel_sprint_2, movies_admin/src/gunicorn-wsgi.conf.py
# (wsgi_app names the test's app).
bind = "0.0.0.0:8000"
workers = 2
wsgi_app = "tests.apps.basic:app"
worker_class = "gthread"
threads = 4  # valid for gthread

max_requests = 1000
max_requests_jitter = 2
timeout = 30

worker_tmp_dir = "/dev/shm"

accesslog = errorlog = "-"  # log to stdout
