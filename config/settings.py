"""Jingtiao settings, read once from environment variables (docs/configuration.md).

With no variables set, the platform runs embedded: a SQLite file under the data
root, the local executor, and Celery on a Redis the embedded run starts itself
(config/embedded.py), so nothing needs to be installed. Production sets
DATABASE_URL, REDIS_URL and SECRET_KEY.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from config.env import Env, dns_label, embedded_secret_key, shared_data_dirs

env = Env()
BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.bool("DEBUG", False)
DATA_ROOT = env.path("JINGTIAO_DATA_ROOT", BASE_DIR / "var")

SECRET_KEY = env.raw("SECRET_KEY") or embedded_secret_key(DATA_ROOT)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "guardian",
    "accounts.apps.LoginProtectionConfig",  # django-axes
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "finetune",
    "scheduler",
    "api",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.console",
            ],
        },
    },
]

_default_database = f"sqlite:///{DATA_ROOT / 'jingtiao.sqlite3'}"
try:
    DATABASES = {
        "default": dj_database_url.parse(
            env.str("DATABASE_URL", _default_database),
            conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded run shares one file between the web server and the worker. In WAL
    # mode readers never wait for the writer, nor it for them (writers still take
    # turns, IMMEDIATE: each waits its turn rather than fail half-way).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("JINGTIAO_CACHE_PREFIX", "jingtiao"),
        }
    }
else:
    # The embedded web server and worker are separate processes: a file cache
    # under the data root is what they can share without a server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_ROOT / "cache"),
        }
    }

AUTHENTICATION_BACKENDS = [
    # First: refuses a login that is locked out before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Object permissions (user.has_perm(perm, job)): the platform's one rule.
    "finetune.access.ObjectAccessBackend",
]
# guardian holds only the creators' grants; its backend would answer has_perm by them
# alone, so finetune.access.ObjectAccessBackend stands in its place on purpose.
SILENCED_SYSTEM_CHECKS = ["guardian.W001"]
GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None  # no anonymous object permissions: every page needs a login

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): after this many wrong passwords for one user from
# one address, that pair is refused for the cool-off time; a right password resets.
AXES_ENABLED = env.bool("JINGTIAO_LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = env.int("JINGTIAO_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("JINGTIAO_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
# Behind N reverse proxies the client's address is the N-th from the right of
# X-Forwarded-For; without one, that header is the client's to forge and is ignored.
JINGTIAO_PROXY_COUNT = env.int("JINGTIAO_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "accounts.views.client_address"
AXES_USERNAME_CALLABLE = "accounts.views.login_username"

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = env.str("LANGUAGE_CODE", "en")
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", DATA_ROOT / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = DATA_ROOT / "uploads"

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("TRUST_X_FORWARDED_PROTO", False) else None
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts, styles and requests from this site
# only; no inline script or style anywhere in the pages (htmx's own indicator style
# is turned off in base.html and lives in console.css).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- API (api/, docs/api.md) ----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.BearerTokenAuthentication",
        # the documentation page's "Try it out", for a user logged in to the pages
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Page",
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.TokenRateThrottle"],
    # requests per token (or per logged-in user) and period: second, minute, hour, day
    "DEFAULT_THROTTLE_RATES": {"token": env.str("JINGTIAO_API_RATE", "600/minute")},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.handle",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Jingtiao API",
    "DESCRIPTION": "Fine-tuning jobs, data sets and models of Jingtiao (精调). "
    "Authenticate with a personal API token: `Authorization: Bearer jt_…`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "PREPROCESSING_HOOKS": ["api.schema.only_the_api"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ---------------------------------------------------------------------------
# Without Redis the embedded run starts a Redis of its own, on a unix socket under
# the data root (config/embedded.py): nothing to install, and the transport is the
# one production runs. kombu's file-system transport, used before, could hand the
# worker a message file still being written (docs/operations.md "Embedded run").
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", REDIS_URL or f"redis+socket://{DATA_ROOT / 'broker' / 'redis.sock'}"
)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", 180, minimum=1)
CELERY_TASK_DEFAULT_QUEUE = "jingtiao"
# Data sets are validated by workers of their own (finetune/services/validation.py).
CELERY_TASK_ROUTES = {
    "finetune.tasks.validate_dataset": {"queue": "data"},
    # work on models, by a worker with the trainer's libraries and, on a cluster, a
    # device: the playground's answers, and merging a LoRA into its base (a queue of its
    # own, so that a deployment can give the long merges workers apart)
    "finetune.tasks.answer_playground": {"queue": "inference"},
    "finetune.tasks.export_version": {"queue": "export"},
    "finetune.tasks.evaluate_version": {"queue": "export"},
    # webhook deliveries wait on other people's servers: a queue of their own, with
    # workers of their own in production, so a slow receiver holds up no admission (the
    # embedded run's one worker takes both: each attempt is bounded by
    # JINGTIAO_WEBHOOK_TIMEOUT_SECONDS)
    "webhooks.tasks.deliver": {"queue": "webhooks"},
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_ROOT / "celerybeat-schedule")

# --- Jingtiao ---------------------------------------------------------------------------
JINGTIAO_EXECUTOR = env.choice("JINGTIAO_EXECUTOR", "local", ("local", "kubernetes"))
JINGTIAO_K8S_NAMESPACE = env.str("JINGTIAO_K8S_NAMESPACE", "jingtiao")
JINGTIAO_MLU_RESOURCE = env.str("JINGTIAO_MLU_RESOURCE", "cambricon.com/mlu")
JINGTIAO_GPU_RESOURCE = env.str("JINGTIAO_GPU_RESOURCE", "nvidia.com/gpu")
JINGTIAO_DEFAULT_DURATION = timedelta(
    hours=env.int("JINGTIAO_DEFAULT_DURATION_HOURS", 24, minimum=1)
)
JINGTIAO_CLEANUP_BATCH = env.int("JINGTIAO_CLEANUP_BATCH", 500, minimum=1)
# Folders under the data root that every project may read data from, never write
# (finetune/storage.py): e.g. a cluster's shared corpus volume mounted there.
JINGTIAO_SHARED_DATA_DIRS = shared_data_dirs(env.list("JINGTIAO_SHARED_DATA_DIRS", []))
# A text-to-image upload (.zip): at most this many files, unpacking to at most this much.
JINGTIAO_UPLOAD_MAX_FILES = env.int("JINGTIAO_UPLOAD_MAX_FILES", 200_000, minimum=1)
# A data set's validation (a worker of the "data" queue) is given up after this long.
JINGTIAO_VALIDATION_TIME_LIMIT_SECONDS = env.int(
    "JINGTIAO_VALIDATION_TIME_LIMIT_SECONDS", 6 * 3600, minimum=60
)
# Behind nginx serving the data volume as an internal location (e.g. "/_data/"), a
# model version's files are sent by nginx (X-Accel-Redirect); empty: Django sends them.
JINGTIAO_X_ACCEL_PREFIX = env.str("JINGTIAO_X_ACCEL_PREFIX", "")
# The playground (finetune/services/playground.py): what one question may hold and take,
# and the memory its worker may keep models loaded in.
JINGTIAO_PLAYGROUND_MAX_PROMPT_CHARS = env.int(
    "JINGTIAO_PLAYGROUND_MAX_PROMPT_CHARS", 8000, minimum=100
)
JINGTIAO_PLAYGROUND_MAX_NEW_TOKENS = env.int("JINGTIAO_PLAYGROUND_MAX_NEW_TOKENS", 512, minimum=1)
JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS = env.int(
    "JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS", 120, minimum=5
)
JINGTIAO_PLAYGROUND_CACHE_BYTES = env.int("JINGTIAO_PLAYGROUND_CACHE_BYTES", 16 * 2**30, minimum=0)
# A question no worker took up in this time is given up, with the reason.
JINGTIAO_PLAYGROUND_WAIT_SECONDS = env.int("JINGTIAO_PLAYGROUND_WAIT_SECONDS", 600, minimum=10)
# How long the checkpoints of a job stopped, expired or failed are kept to resume from.
JINGTIAO_CHECKPOINT_RETENTION_DAYS = env.int("JINGTIAO_CHECKPOINT_RETENTION_DAYS", 14, minimum=0)
# How long merging a LoRA into its base may take (a 72B model on a CPU takes hours).
JINGTIAO_EXPORT_TIME_LIMIT_SECONDS = env.int(
    "JINGTIAO_EXPORT_TIME_LIMIT_SECONDS", 4 * 3600, minimum=60
)
# A merge or an evaluation whose worker wrote no beat (every 10 s) for this long is
# taken up again by another worker (finetune/services/modelwork.py).
JINGTIAO_MODEL_WORK_SILENT_SECONDS = env.int("JINGTIAO_MODEL_WORK_SILENT_SECONDS", 120, minimum=30)
JINGTIAO_UPLOAD_MAX_UNPACKED_BYTES = env.int(
    "JINGTIAO_UPLOAD_MAX_UNPACKED_BYTES", 50 * 2**30, minimum=2**20
)
# Webhooks (docs/webhooks.md): how long an attempt waits for the receiver, how many
# attempts a message gets, the wait before the first retry (the later ones follow
# Standard Webhooks' schedule, scaled to it), whether addresses on private networks
# and this machine may receive them (off: a project administrator could otherwise
# reach the cluster's insides), and where the links in messages point.
JINGTIAO_WEBHOOK_TIMEOUT_SECONDS = env.int("JINGTIAO_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
JINGTIAO_WEBHOOK_MAX_ATTEMPTS = env.int("JINGTIAO_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS = env.int("JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS", 5, minimum=0)
JINGTIAO_WEBHOOK_ALLOW_PRIVATE = env.bool("JINGTIAO_WEBHOOK_ALLOW_PRIVATE", False)

# --- Executors (docs/executors.md, docs/kubernetes.md) ----------------------------------
# Where workers reach the platform's report endpoint (not necessarily the public URL).
JINGTIAO_REPORT_URL = env.str("JINGTIAO_REPORT_URL", "http://127.0.0.1:8000")
# The platform's address as people reach it, for the links in webhook messages.
JINGTIAO_WEBHOOK_PUBLIC_URL = env.str("JINGTIAO_WEBHOOK_PUBLIC_URL", JINGTIAO_REPORT_URL)
# The report endpoint (F7.1): the largest body, and reports per minute and worker (node).
JINGTIAO_REPORT_MAX_BYTES = env.int("JINGTIAO_REPORT_MAX_BYTES", 1024 * 1024, minimum=1024)
JINGTIAO_REPORT_RATE_PER_MINUTE = env.int("JINGTIAO_REPORT_RATE_PER_MINUTE", 120, minimum=1)
# How often each worker sends a batch, and samples its CPU, memory, device and network.
JINGTIAO_REPORT_INTERVAL_SECONDS = env.int("JINGTIAO_REPORT_INTERVAL_SECONDS", 5, minimum=1)
JINGTIAO_RESOURCE_SAMPLE_SECONDS = env.int("JINGTIAO_RESOURCE_SAMPLE_SECONDS", 15, minimum=1)
# Reported metrics: full resolution for this long, then one point per window.
JINGTIAO_METRICS_FULL_RESOLUTION_HOURS = env.int(
    "JINGTIAO_METRICS_FULL_RESOLUTION_HOURS", 72, minimum=1
)
JINGTIAO_METRICS_DOWNSAMPLE_SECONDS = env.int("JINGTIAO_METRICS_DOWNSAMPLE_SECONDS", 60, minimum=1)
JINGTIAO_STOP_GRACE_SECONDS = env.int("JINGTIAO_STOP_GRACE_SECONDS", 30, minimum=0)
JINGTIAO_UNSCHEDULABLE_TIMEOUT_SECONDS = env.int(
    "JINGTIAO_UNSCHEDULABLE_TIMEOUT_SECONDS", 600, minimum=0
)
# A RUNNING job with no workload this long after its launcher's last beat (every 2 s
# while it launches) is requeued if it never launched, else failed.
JINGTIAO_MISSING_GRACE_SECONDS = env.int("JINGTIAO_MISSING_GRACE_SECONDS", 10, minimum=0)
JINGTIAO_LOST_GRACE_SECONDS = env.int("JINGTIAO_LOST_GRACE_SECONDS", 120, minimum=0)
# A job the cluster gave back (unschedulable, lost, evicted) this many times fails.
JINGTIAO_MAX_REQUEUES = env.int("JINGTIAO_MAX_REQUEUES", 3, minimum=0)
JINGTIAO_LOCAL_NODE_NAME = env.str("JINGTIAO_LOCAL_NODE_NAME", "")
# The local executor presents this machine as this many nodes, sharing out its CPUs,
# memory and devices (named <node name>-0, -1, ...): multi-node jobs on one machine.
JINGTIAO_LOCAL_NODES = env.int("JINGTIAO_LOCAL_NODES", 1, minimum=1)
# Fault injection on the launch path (config/failpoints.py), for benchmarks/faults.py.
JINGTIAO_FAILPOINTS = env.bool("JINGTIAO_FAILPOINTS", False)
JINGTIAO_TRAINER_IMAGE = env.str("JINGTIAO_TRAINER_IMAGE", "jingtiao-trainer:0.1.0")
# Empty: in-cluster credentials inside a pod, else ~/.kube/config; "in-cluster" or a path.
JINGTIAO_K8S_KUBECONFIG = env.str("JINGTIAO_K8S_KUBECONFIG", "")
JINGTIAO_K8S_DATA_PVC = env.str("JINGTIAO_K8S_DATA_PVC", "jingtiao-data")
JINGTIAO_K8S_POOL_LABEL = env.str("JINGTIAO_K8S_POOL_LABEL", "jingtiao.io/pool")
JINGTIAO_K8S_DRIVER_LABEL = env.str("JINGTIAO_K8S_DRIVER_LABEL", "DriverVersion")
# Cambricon's device plugin labels each node with its MLU model (and DriverVersion).
JINGTIAO_K8S_MODEL_LABEL = env.str("JINGTIAO_K8S_MODEL_LABEL", "Model")
JINGTIAO_K8S_RUN_AS_USER = env.int("JINGTIAO_K8S_RUN_AS_USER", 1000, minimum=1)
JINGTIAO_K8S_REQUEST_TIMEOUT = env.int("JINGTIAO_K8S_REQUEST_TIMEOUT", 30, minimum=1)
# Who admits jobs: "jingtiao", its own planner placing them on nodes, or "kueue": each
# job's Indexed Job goes to Kueue (kubernetes-sigs/kueue) at once, suspended and labelled
# with its project's LocalQueue and its priority's WorkloadPriorityClass, and runs when
# Kueue admits it (docs/kubernetes.md, "With Kueue").
JINGTIAO_ADMISSION = env.choice("JINGTIAO_ADMISSION", "jingtiao", ("jingtiao", "kueue"))
# The LocalQueue (in JINGTIAO_K8S_NAMESPACE) of a project that names none of its own.
JINGTIAO_KUEUE_DEFAULT_QUEUE = dns_label(
    "JINGTIAO_KUEUE_DEFAULT_QUEUE", env.str("JINGTIAO_KUEUE_DEFAULT_QUEUE", "jingtiao")
)
# The WorkloadPriorityClass of each priority: "<prefix>low", "<prefix>normal", ...
JINGTIAO_KUEUE_PRIORITY_PREFIX = env.str("JINGTIAO_KUEUE_PRIORITY_PREFIX", "jingtiao-")
if JINGTIAO_ADMISSION == "kueue" and JINGTIAO_EXECUTOR != "kubernetes":
    raise ImproperlyConfigured("JINGTIAO_ADMISSION=kueue needs JINGTIAO_EXECUTOR=kubernetes.")
# Periodic tasks, every N seconds, on the one queue. A beat message not taken
# within twice its period is dropped: the next one is already on its way.
_PERIODIC = {
    "observe-running-jobs": (
        "scheduler.tasks.observe_running_jobs",
        env.int("JINGTIAO_OBSERVE_INTERVAL_SECONDS", 10, minimum=1),
    ),
    "run-admission": (
        "scheduler.tasks.run_admission",
        env.int("JINGTIAO_ADMISSION_INTERVAL_SECONDS", 15, minimum=1),
    ),
    "expire-jobs": ("scheduler.tasks.expire_jobs", 30),
    "sync-nodes": (
        "scheduler.tasks.sync_nodes",
        env.int("JINGTIAO_NODE_SYNC_INTERVAL_SECONDS", 60, minimum=1),
    ),
    "reconcile-workloads": ("scheduler.tasks.reconcile_workloads", 60),
    "heartbeat": ("scheduler.tasks.heartbeat", 10),
    "downsample-metrics": ("finetune.tasks.downsample_metrics", 3600),
    "sweep-validations": ("finetune.tasks.sweep_validations", 60),
    "sweep-exports": ("finetune.tasks.sweep_exports", 60),
    "sweep-playground": ("finetune.tasks.sweep_playground", 60),
    "sweep-webhooks": ("webhooks.tasks.sweep_deliveries", 60),
    "remove-old-checkpoints": ("finetune.tasks.remove_old_checkpoints", 3600),
}
# /healthz reports beat down when its heartbeat (above) is older than this.
JINGTIAO_BEAT_MAX_AGE_SECONDS = env.int("JINGTIAO_BEAT_MAX_AGE_SECONDS", 60, minimum=15)
CELERY_BEAT_SCHEDULE = {
    name: {"task": task, "schedule": every, "options": {"queue": "jingtiao", "expires": 2 * every}}
    for name, (task, every) in _PERIODIC.items()
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    # django-axes logs every login at INFO; its AccessLog table keeps them for audits.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
