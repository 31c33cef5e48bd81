from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rq_signals", "0002_outboxentry_manage_jobs_permission"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReceiversOverview",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
            ],
            options={
                "verbose_name": "receivers overview",
                "verbose_name_plural": "receivers overview",
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
