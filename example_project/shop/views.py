"""The partner's endpoint, served by the shop itself so the demo needs nothing else.

It fails on purpose: every request while an `Outage` exists, and otherwise a random share of
requests set by settings.WEBHOOK_FAILURE_RATE (env WEBHOOK_FAILURE_RATE, 0.3 by default).
"""

from __future__ import annotations

import json
import random

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from shop.models import Outage, WebhookDelivery


@csrf_exempt
@require_POST
def order_webhook(request: HttpRequest) -> JsonResponse:
    try:
        payload = json.loads(request.body)
        order_number = int(payload["order"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "expected JSON with an integer 'order'"}, status=400)
    if Outage.objects.exists():
        status, answer = 503, "partner outage"
    elif random.random() < settings.WEBHOOK_FAILURE_RATE:
        status, answer = 503, "partner busy, try again later"
    else:
        status, answer = 200, "ok"
    WebhookDelivery.objects.create(
        order_number=order_number, event=str(payload.get("event", "")), status_code=status, payload=payload
    )
    return JsonResponse({"result": answer}, status=status)
