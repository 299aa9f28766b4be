"""Settings for the test suite: the normal settings with a development secret allowed."""
import os

os.environ.setdefault("DJANGO_DEBUG", "true")
# The suite makes many calls per token and per address; tests of throttling lower these themselves.
os.environ.setdefault("API_THROTTLE_TOKEN_RATE", "100000/minute")
os.environ.setdefault("API_THROTTLE_ANON_RATE", "100000/minute")

from config.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# pytest-django runs with DEBUG off and no `collectstatic`: whitenoise serves the apps' static files
# from their directories, as it does with DEBUG on.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
