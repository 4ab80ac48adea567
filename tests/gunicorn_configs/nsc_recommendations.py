# Source: ukhsa-collaboration/nsc-recommendationsp, gunicorn.conf.py (its first lines set
# gunicorn.SERVER_SOFTWARE, gunicorn's own module: left out).
workers = 4
threads = 4
bind = "0.0.0.0:8080"


def pre_request(worker, req):
    worker.log.info(f"REQUEST - {req.method} ({req.path}): {req.headers}")


def post_request(worker, req, environ, resp):
    worker.log.info(f"RESPONSE - {req.method} ({req.path}): {resp.status}")
