"""Pictor settings: one module, every value read from the environment (see README for the list)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config import env as E

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ
# pytest sets PYTEST_VERSION before Django starts, so the suite needs no secret of its own.
TESTING = "PYTEST_VERSION" in ENV

try:
    DEBUG = E.env_bool(ENV, "DEBUG", default=False)
    DATA_DIR = E.data_dir(ENV, base_dir=BASE_DIR)
    SECRET_KEY = E.secret_key(ENV, debug=DEBUG, testing=TESTING, data=DATA_DIR)
    _broker = E.broker_settings(ENV, data=DATA_DIR)
    ALLOWED_HOSTS = E.env_list(ENV, "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
    CSRF_TRUSTED_ORIGINS = E.env_list(ENV, "CSRF_TRUSTED_ORIGINS", default=[])
    PICTOR_ALLOW_SIGNUP = E.env_bool(ENV, "PICTOR_ALLOW_SIGNUP", default=False)
    PICTOR_INVITE_DAYS = E.env_int(ENV, "PICTOR_INVITE_DAYS", default=7)
    PICTOR_MAX_UPLOAD_BYTES = E.env_int(ENV, "PICTOR_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
    PICTOR_MAX_PIXELS = E.env_int(ENV, "PICTOR_MAX_PIXELS", default=40_000_000)
    # Images per upload or invoke request (shared/API.md "Limits"): more answer 413 too_large.
    PICTOR_MAX_ITEMS = E.env_int(ENV, "PICTOR_MAX_ITEMS", default=64)
    # Videos (invoke and uploads): one per request, bounded in bytes, length, frame size and sampled frames.
    PICTOR_VIDEO_MAX_BYTES = E.env_int(ENV, "PICTOR_VIDEO_MAX_BYTES", default=512 * 1024 * 1024)
    PICTOR_VIDEO_MAX_SECONDS = E.env_float(ENV, "PICTOR_VIDEO_MAX_SECONDS", default=300.0)
    PICTOR_VIDEO_MAX_FRAMES = E.env_int(ENV, "PICTOR_VIDEO_MAX_FRAMES", default=600)
    PICTOR_VIDEO_MAX_PIXELS = E.env_int(ENV, "PICTOR_VIDEO_MAX_PIXELS", default=3840 * 2160)
    PICTOR_VIDEO_MAX_FPS = E.env_float(ENV, "PICTOR_VIDEO_MAX_FPS", default=10.0)
    PICTOR_ZIP_MAX_ENTRIES = E.env_int(ENV, "PICTOR_ZIP_MAX_ENTRIES", default=10_000)
    PICTOR_ZIP_MAX_BYTES = E.env_int(ENV, "PICTOR_ZIP_MAX_BYTES", default=2 * 1024**3)
    PICTOR_ZIP_MAX_RATIO = E.env_int(ENV, "PICTOR_ZIP_MAX_RATIO", default=100)
    # Explain costs seconds of CPU per image, so it gets fewer images per request.
    PICTOR_MAX_EXPLAIN = E.env_int(ENV, "PICTOR_MAX_EXPLAIN", default=4)
    # Invoke decodes and runs its images this many at a time.
    PICTOR_INVOKE_BATCH = E.env_int(ENV, "PICTOR_INVOKE_BATCH", default=8)
    # One request (a zip, or a JSON batch of base64 images) may be this large.
    PICTOR_MAX_REQUEST_BYTES = E.env_int(ENV, "PICTOR_MAX_REQUEST_BYTES", default=1024**3)
    PICTOR_LEASE_SECONDS = E.env_int(ENV, "PICTOR_LEASE_SECONDS", default=600)
    PICTOR_JOB_STALE_SECONDS = E.env_int(ENV, "PICTOR_JOB_STALE_SECONDS", default=120)
    # A quick training asked for before its labeled samples have features waits this long for them.
    PICTOR_FEATURES_WAIT_SECONDS = E.env_int(ENV, "PICTOR_FEATURES_WAIT_SECONDS", default=600)
    # Seconds between the periodic sweeps (stale jobs, lost embeddings); 0 keeps the defaults.
    PICTOR_SWEEP_SECONDS = E.env_float(ENV, "PICTOR_SWEEP_SECONDS", default=0.0)
    PICTOR_TRAINING_TIME_LIMIT = E.env_int(ENV, "PICTOR_TRAINING_TIME_LIMIT", default=3600)
    # Features every sample gets at ingest (ImageNet backbones and the classic "pixels"); the quick
    # model picks among them and their combinations by cross-validation.
    PICTOR_BACKBONES = E.env_list(ENV, "PICTOR_BACKBONES", default=["lite0", "lite2", "pixels"])
    # Cost cap of one quick-model AutoML (seconds): remaining candidates are skipped past it.
    PICTOR_QUICK_SECONDS = E.env_float(ENV, "PICTOR_QUICK_SECONDS", default=5.0)
    PICTOR_EMBED_BATCH = E.env_int(ENV, "PICTOR_EMBED_BATCH", default=16)
    # The feature store (memory-mapped vector files per project and backbone, training/ml/store.py):
    # a local cache of the vectors the database keeps, rebuilt from it when missing.
    PICTOR_FEATURES_DIR = Path(ENV.get("PICTOR_FEATURES_DIR", "") or DATA_DIR / "features")
    # Labeled samples a quick retrain fits on at most (a stratified subsample beyond; the metrics say so).
    PICTOR_QUICK_MAX_TRAIN = E.env_int(ENV, "PICTOR_QUICK_MAX_TRAIN", default=5_000)
    # Unlabeled samples the active learner ranks at most per refresh (a uniform random subsample beyond).
    PICTOR_QUEUE_POOL = E.env_int(ENV, "PICTOR_QUEUE_POOL", default=10_000)
    # Seconds a quick retrain waits after a label so a burst of labels costs one retrain.
    PICTOR_FINETUNE_BACKBONE = ENV.get("PICTOR_FINETUNE_BACKBONE", "lite0")
    # Backbones the full training's recipe search fine-tunes (training.ml.recipes), cheapest first;
    # setting PICTOR_FINETUNE_BACKBONE alone pins the search to that one.
    PICTOR_FINETUNE_BACKBONES = E.env_list(
        ENV,
        "PICTOR_FINETUNE_BACKBONES",
        default=[PICTOR_FINETUNE_BACKBONE] if ENV.get("PICTOR_FINETUNE_BACKBONE") else ["lite0", "lite2"],
    )
    PICTOR_FINETUNE_SECONDS = E.env_float(ENV, "PICTOR_FINETUNE_SECONDS", default=600.0)
    PICTOR_FINETUNE_EPOCHS = E.env_int(ENV, "PICTOR_FINETUNE_EPOCHS", default=8)
    # After the search, the winner is retrained on every label within this many seconds (skipped
    # when the search's measured costs say it cannot fit: the split's model is served instead).
    # 600 + 240 s keeps a 1k-image full training within 15 minutes on 2 CPU cores.
    PICTOR_FINETUNE_REFIT_SECONDS = E.env_float(ENV, "PICTOR_FINETUNE_REFIT_SECONDS", default=240.0)
    # 0: the backbone's native resolution; smaller values make test and demo runs fast.
    PICTOR_FINETUNE_RESOLUTION = E.env_int(ENV, "PICTOR_FINETUNE_RESOLUTION", default=0)
    PICTOR_QUICK_DEBOUNCE = E.env_float(ENV, "PICTOR_QUICK_DEBOUNCE", default=0.3)
    # Requests per key (or signed-in user) and period: "600/min", "20/s".
    PICTOR_API_RATE = ENV.get("PICTOR_API_RATE", "1200/min")
    # Where the throttle counts: "auto" (Redis when the cache is Redis, else the database), "redis", "database".
    PICTOR_THROTTLE_STORE = ENV.get("PICTOR_THROTTLE_STORE", "auto")
    # Failed API authentications (invalid keys) per client address and period.
    PICTOR_AUTH_FAIL_RATE = ENV.get("PICTOR_AUTH_FAIL_RATE", "30/min")
    # Sign-in lockout (django-axes): failures per username and address, then a cool-off.
    PICTOR_LOGIN_FAILURES = E.env_int(ENV, "PICTOR_LOGIN_FAILURES", default=5)
    PICTOR_LOGIN_COOLOFF_MINUTES = E.env_int(ENV, "PICTOR_LOGIN_COOLOFF_MINUTES", default=15)
    # Batch jobs (batches app): folders an admin allows as sources (colon-separated), items per chunk
    # task, images per forward pass, the largest archive upload, and when a claimed chunk counts as lost.
    PICTOR_IMPORT_ROOTS = [p for p in ENV.get("PICTOR_IMPORT_ROOTS", "").split(os.pathsep) if p.strip()]
    PICTOR_BATCH_CHUNK = E.env_int(ENV, "PICTOR_BATCH_CHUNK", default=256)
    PICTOR_BATCH_INFER = E.env_int(ENV, "PICTOR_BATCH_INFER", default=32)
    PICTOR_BATCH_MAX_UPLOAD_BYTES = E.env_int(ENV, "PICTOR_BATCH_MAX_UPLOAD_BYTES", default=64 * 1024**3)
    PICTOR_BATCH_STALE_SECONDS = E.env_int(ENV, "PICTOR_BATCH_STALE_SECONDS", default=300)
    # onnxruntime threads per session (0: all cores). Several workers on one machine: cores / workers.
    PICTOR_ONNX_THREADS = E.env_int(ENV, "PICTOR_ONNX_THREADS", default=0)
    _database_url = ENV.get("DATABASE_URL", "").strip() or f"sqlite:///{DATA_DIR / 'pictor.sqlite3'}"
except E.EnvError as exc:
    raise ImproperlyConfigured(str(exc)) from None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "projects",
    "labeling",
    "training",
    "inference",
    "batches",
    "axes",
    "csp",
]

MIDDLEWARE = [
    # Outermost: sees the final response, whose closers run after the server has sent it.
    "config.after_response.AfterResponseMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Content-Security-Policy (django-csp): scripts and styles only from our own static files (htmx and
# Swagger UI are vendored); no inline scripts. Inline style attributes stay allowed (progress bars,
# label colours); Swagger UI shows data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
AXES_FAILURE_LIMIT = PICTOR_LOGIN_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=PICTOR_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "projects.context_processors.pictor",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=0 if TESTING else 60)}
if ENV.get("PICTOR_TEST_DB_NAME"):
    # Lets two test runs share one PostgreSQL server without fighting over "test_<name>".
    DATABASES["default"]["TEST"] = {"NAME": ENV["PICTOR_TEST_DB_NAME"]}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker are separate processes on the embedded default: WAL lets readers proceed
    # while one writes, and IMMEDIATE transactions wait for the lock instead of failing mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DATA_UPLOAD_MAX_MEMORY_SIZE = PICTOR_MAX_REQUEST_BYTES
DATA_UPLOAD_MAX_NUMBER_FILES = 1000
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing strength is not what the tests check, and PBKDF2 would dominate their run time.
    # PBKDF2 stays available for tests whose users sign in to a server process in production mode.
    PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
MEDIA_ROOT = DATA_DIR / "media"
# Media is never served directly: every image goes through a view that checks project access.
MEDIA_URL = "/media-not-served/"

_storage_backend = ENV.get("PICTOR_STORAGE", "filesystem").strip().lower()
if _storage_backend == "s3":
    # django-storages reads AWS_* / AWS_S3_* variables itself (bucket, endpoint, credentials).
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {}}
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Lets the live-server browser tests and DEBUG runs find static files without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG or TESTING

CACHES = {"default": _broker["cache"]}
PICTOR_EMBEDDED = _broker["embedded"]
for _folder in _broker.get("folders", []):
    _folder.mkdir(parents=True, exist_ok=True)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

CELERY_BROKER_URL = _broker["broker_url"]
CELERY_BROKER_TRANSPORT_OPTIONS = _broker["broker_transport_options"]
CELERY_RESULT_BACKEND = _broker["result_backend"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ROUTES = {
    "training.tasks.embed_project": {"queue": "embeddings"},
    "training.tasks.embeddings_sweep": {"queue": "embeddings"},
    "training.tasks.quick_retrain": {"queue": "default"},
    "training.tasks.queue_refresh": {"queue": "default"},
    "training.tasks.training_jobs_sweep": {"queue": "default"},
    "batches.tasks.*": {"queue": "batch"},
    "projects.tasks.project_purge": {"queue": "default"},
    "projects.tasks.projects_purge_sweep": {"queue": "default"},
}
CELERY_BEAT_SCHEDULE: dict = {
    "embeddings-sweep": {"task": "training.tasks.embeddings_sweep", "schedule": PICTOR_SWEEP_SECONDS or 60.0},
    "training-jobs-sweep": {"task": "training.tasks.training_jobs_sweep", "schedule": PICTOR_SWEEP_SECONDS or 30.0},
    "batches-sweep": {"task": "batches.tasks.batches_sweep", "schedule": PICTOR_SWEEP_SECONDS or 30.0},
    "projects-purge-sweep": {"task": "projects.tasks.projects_purge_sweep", "schedule": 300.0},
}
MODEL_CACHE_DIR = DATA_DIR / "model-cache"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "projects.api_auth.ProjectKeyAuthentication",
        "projects.api_auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["projects.api_auth.HasUserOrKey"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["inference.throttles.KeyRateThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # ?format= belongs to the API contract (format=series), not to DRF's renderer switch.
    "URL_FORMAT_OVERRIDE": None,
    # Proxies in front of the web server whose X-Forwarded-For is trusted (0: the peer address).
    "NUM_PROXIES": E.env_int(ENV, "PICTOR_NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pictor API",
    "DESCRIPTION": "Self-hosted AutoML for image classification.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: nullable objects are `oneOf [X, null]`, which validators and generated clients read right.
    "OAS_VERSION": "3.1.0",
    # a model version's mode (quick, full, zero_shot) and what a training can be (quick, full);
    # two models have a `status`: each enum keeps a name of its own
    "ENUM_NAME_OVERRIDES": {
        "ModelModeEnum": "training.models.ModelVersion.Mode",
        "ModeEnum": "training.serializers.TRAINED_MODE_CHOICES",  # the name generated clients know
        "StatusEnum": "training.models.TrainingJob.Status",
        "BatchStatusEnum": "batches.models.Batch.Status",
    },
    # Bodies with one media type are marked required; the two that take JSON or multipart (upload,
    # invoke) are not, since openapi-python-client 0.29 emits a module that fails to import for a
    # required body with several media types. The server answers 400 `invalid` without one.
}

if not DEBUG and not TESTING:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = E.env_bool(ENV, "PICTOR_SECURE_COOKIES", default=False)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": ENV.get("PICTOR_LOG_LEVEL", "INFO")},
}
