"""Signals other apps listen to, so the job module need not import the scheduler.

`job_changed(job_id, change)` is sent inside `transaction.on_commit` after a
user's operation on a job took effect; `change` is one of CHANGES. The
scheduler reacts: an admission pass after created/priority/duration/stopped/
requeued, a workload teardown after stopped/deleted, the teardown and then the
move back to the queue after requeue (an operator asked for it).
"""

from django.dispatch import Signal

CHANGES = ("created", "priority", "duration", "stopped", "deleted", "requeue", "requeued")

job_changed = Signal()
