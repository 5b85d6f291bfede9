from django.apps import AppConfig


class OcrappConfig(AppConfig):
    name = "ocrapp"
    verbose_name = "Serial reader"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ocrapp import signature  # noqa: F401  (connects the login time of signatures)
