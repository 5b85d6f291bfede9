from django.apps import AppConfig


class OcrappConfig(AppConfig):
    name = "ocrapp"
    verbose_name = "Serial reader"
    default_auto_field = "django.db.models.BigAutoField"
