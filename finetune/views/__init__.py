"""Pages of the fine-tuning module, one module per object type.

Every object comes through `finetune.access.restrict`/`get_for` (views/base.py).
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("finetune:job_list")
