"""Order confirmation emails, through Django's email backend (files in var/mail/ in the demo)."""

from __future__ import annotations

from django.core.mail import send_mail
from django.utils import timezone

from shop.models import Order


def send_confirmation(order: Order) -> None:
    """Email the customer that their order was received, then note when on the order."""
    send_mail(
        subject=f"Your order #{order.pk}",
        message=f"Thank you for your order of {order.total}. We will let you know when it ships.",
        from_email=None,
        recipient_list=[order.customer_email],
    )
    Order.objects.filter(pk=order.pk).update(confirmation_sent_at=timezone.now())
