from django.db import migrations, models


class Migration(migrations.Migration):
    """Who may read a passage, stored with it (``parley_index`` fills the columns)."""

    dependencies = [
        ("parley", "0004_invitations"),
    ]

    operations = [
        migrations.AddField(
            model_name="knowledgepassage",
            name="owner",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Primary key of the one user who may read it; '' when it has no owner.",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="knowledgepassage",
            name="permission",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Model-level permission needed to read it ('app_label.codename'), or ''.",
                max_length=255,
            ),
            preserve_default=False,
        ),
    ]
