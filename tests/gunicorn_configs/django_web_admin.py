# Source: xdot2012/django_web_admin, code/gunicorn_hooks.py
def post_fork(server, worker):
    server.log.info("Worker spawned (post-fork) (pid: %s)", worker.pid)

def pre_fork(server, worker):
    server.log.info("Worker spawned (pre-fork) (pid: %s)", worker.pid)

def pre_exec(server):
    server.log.info("Forked child, re-executing.")

def when_ready(server):
    server.log.info("Server is ready. Spawning workers")

def worker_int(worker):
    worker.log.info("worker received INT or QUIT signal")

def worker_abort(worker):
    import traceback, io
    debug_info = io.StringIO()
    debug_info.write("Traceback at time of timeout:\n")
    traceback.print_stack(file=debug_info)
    worker.log.critical(debug_info.getvalue())
