# Source: mryab/efficient-dl-systems, week06_deployment/04_metrics/gunicorn.py (its
# child_exit goes through prometheus_flask_exporter to prometheus_client's
# mark_process_dead: the same call, made directly).
import multiprocessing

from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)


bind = '0.0.0.0:8080'
workers = 1  # multiprocessing.cpu_count() * 2 + 1
