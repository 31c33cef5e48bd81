from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("rq_signals", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="outboxentry",
            options={
                "ordering": ("id",),
                "permissions": (("manage_jobs", "Can requeue, delete, stop and clear RQ jobs and queues"),),
                "verbose_name": "outbox entry",
                "verbose_name_plural": "outbox entries",
            },
        ),
    ]
