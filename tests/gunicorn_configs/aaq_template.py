# Source: IDinsight/aaq_ud_template, core_model/gunicorn.conf.py (its child_exit goes
# through prometheus_flask_exporter to prometheus_client's mark_process_dead).
"""
Gunicorn config file
"""
from prometheus_client import multiprocess


def child_exit(server, worker):
    """
    Required for prometheus for Gunicorn
    """
    multiprocess.mark_process_dead(worker.pid)
