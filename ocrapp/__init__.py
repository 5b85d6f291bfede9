"""Serial-number reading web application (Django project + app).

The web process never imports torch, onnxruntime, transformers or cv2; the vision pipeline runs
in Celery workers (``workers/``).
"""
