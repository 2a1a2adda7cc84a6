"""Kiln's wire vocabulary: every label, annotation and condition name other tools can see.

Users select on these labels, `kubectl annotate` these annotations, and Flux, Argo CD and
`kubectl wait` read these condition types; the CLI, the builders, the core and the
controllers all spell them from here, so a rename is one edit and a typo is an import error.

Kiln sets no finalizers: everything it creates carries an owner reference, and the
garbage collector removes it with its owner.
"""

from __future__ import annotations

GROUP = "kiln.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"{GROUP}/"
# The plural resource names of Kiln's kinds (kopf's watches, the apiserver client).
TRAINING_JOBS_PLURAL = "trainingjobs"
MODEL_VERSIONS_PLURAL = "modelversions"
MODEL_DEPLOYMENTS_PLURAL = "modeldeployments"

# --- labels -----------------------------------------------------------------------------
MODEL_LABEL = PREFIX + "model"
VERSION_LABEL = PREFIX + "version"
TRAINING_JOB_LABEL = PREFIX + "training-job"
TRAINING_JOB_UID_LABEL = PREFIX + "training-job-uid"
RUN_LABEL = PREFIX + "run"
ATTEMPT_LABEL = PREFIX + "attempt"
# A search trial's pod: its trial number (the run's final training has none).
TRIAL_LABEL = PREFIX + "trial"
MODEL_DEPLOYMENT_LABEL = PREFIX + "model-deployment"
TRACK_LABEL = PREFIX + "track"
# A label of a serving pod, and an annotation of its template and Deployment.
MODEL_VERSION_LABEL = PREFIX + "model-version"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "kiln"

# --- annotations ------------------------------------------------------------------------
PARAMS_HASH_ANNOTATION = PREFIX + "params-hash"
SHA256_ANNOTATION = PREFIX + "artifact-sha256"
# TrainingJob: a new value asks for a run; status.retrainHandled records the handled one.
RETRAIN_ANNOTATION = PREFIX + "retrain"
# Where earlier operators recorded it (a second write): still read, never written.
RETRAIN_HANDLED_ANNOTATION = PREFIX + "retrain-handled"
# ModelDeployment commands (`kiln pause|resume|promote|abort` set them).
PAUSED_ANNOTATION = PREFIX + "paused"
PROMOTE_ANNOTATION = PREFIX + "promote"
ABORT_ANNOTATION = PREFIX + "abort"
RETRY_ANNOTATION = PREFIX + "retry"
COMMAND_ANNOTATIONS = (PAUSED_ANNOTATION, PROMOTE_ANNOTATION, ABORT_ANNOTATION, RETRY_ANNOTATION)
# ModelVersion lineage (`kiln lineage` reads them back).
LINEAGE_PREFIX = "lineage." + PREFIX
LINEAGE_TRAINING_JOB = LINEAGE_PREFIX + "training-job"  # <namespace>/<name>
LINEAGE_TRAINING_JOB_UID = LINEAGE_PREFIX + "training-job-uid"
LINEAGE_RUN = LINEAGE_PREFIX + "run"
LINEAGE_DATASET = LINEAGE_PREFIX + "dataset"  # <uri>@sha256:<hex>
LINEAGE_TRAINER_IMAGE = LINEAGE_PREFIX + "trainer-image"
LINEAGE_ESTIMATOR = LINEAGE_PREFIX + "estimator"
LINEAGE_PARAMS = LINEAGE_PREFIX + "params"  # canonical JSON, when small enough
LINEAGE_PARAMS_HASH = LINEAGE_PREFIX + "params-hash"  # sha256:<hex> of the canonical JSON
LINEAGE_SEED = LINEAGE_PREFIX + "seed"
LINEAGE_PARENT_VERSION = LINEAGE_PREFIX + "parent-version"
# The search that chose the params: strategy, space, seed, trial counts, winner (JSON).
LINEAGE_SEARCH = LINEAGE_PREFIX + "search"

# --- condition types (kstatus) and the kind-specific ones ---------------------------------
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
FAILED = "Failed"
APPROVED = "Approved"
# ModelDeployment monitoring of the stable track (kiln.core.monitoring).
DRIFTING = "Drifting"
QUALITY_DEGRADED = "QualityDegraded"

# --- condition and Event reasons shared by several modules ------------------------------
INVALID_SPEC = "InvalidSpec"
NAME_CONFLICT = "NameConflict"
# What a failed reconcile reports (kiln.core.failures).
OBJECT_REJECTED = "ObjectRejected"  # the apiserver refused an object (400, 422)
FORBIDDEN = "Forbidden"  # RBAC does not allow the operator a verb (403)
RESOURCE_NOT_FOUND = "ResourceNotFound"  # a resource type is not served (404)
OBJECT_NOT_FOUND = "ObjectNotFound"  # an object went away between two requests (404): retried
WRITE_CONFLICT = "WriteConflict"  # a write raced another (409): retried
API_UNAVAILABLE = "ApiUnavailable"  # unreachable, overloaded or failing (5xx, 429)
RECONCILE_ERROR = "ReconcileError"  # an unexpected error in the operator
# Monitoring: too few samples or labels in the window to judge (never "no drift").
NOT_ENOUGH_DATA = "NotEnoughData"

# --- reasons of one decision each: the module that gives them in brackets ----------------
# How an attempt or a run of a TrainingJob ends (kiln.core.training); the trainer's own
# reasons are kiln.contract.train_report.Reason.
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
DEADLINE_EXCEEDED = "DeadlineExceeded"
POD_DELETED = "PodDeleted"
TRAINER_FAILED = "TrainerFailed"
OUT_OF_MEMORY = "OOMKilled"
INVALID_RESULT = "InvalidResult"
POD_EVICTED = "Evicted"
SUCCEEDED = "Succeeded"
ATTEMPT_STARTED = "AttemptStarted"
# The TrainingJob's own conditions and Events (kiln.core.trainingjob).
RUN_REPLACED = "Replaced"
RUN_SKIPPED = "RunSkipped"
RUN_STARTED = "RunStarted"
SUSPENDED = "Suspended"
# Drifting and QualityDegraded (kiln.core.monitoring; the baseline's reasons come from
# kiln.services.monitoring, MONITORING_ERROR from the deployment controller).
DRIFT_DETECTED = "DriftDetected"
NO_DRIFT = "NoDrift"
PROMETHEUS_UNAVAILABLE = "PrometheusUnavailable"
QUERY_FAILED = "QueryFailed"
NO_BASELINE = "NoBaseline"
BELOW_BOUND = "BelowBound"
WITHIN_BOUND = "WithinBound"
CAPTURE_OFF = "CaptureOff"
CAPTURE_UNAVAILABLE = "CaptureUnavailable"
NO_TRAINING_METRIC = "NoTrainingMetric"
METRIC_NOT_MEASURED = "MetricNotMeasured"
BASELINE_UNAVAILABLE = "BaselineUnavailable"
BASELINE_INTEGRITY_ERROR = "BaselineIntegrityError"
MONITORING_ERROR = "MonitoringError"
# The Events posted on a change of those two conditions' status (kiln.core.monitoring).
EVENT_DRIFT_DETECTED = "DriftDetected"
EVENT_DRIFT_RESOLVED = "DriftResolved"
EVENT_NO_DRIFT = "NoDrift"
EVENT_DRIFT_UNKNOWN = "DriftUnknown"
EVENT_QUALITY_DEGRADED = "QualityDegraded"
EVENT_QUALITY_RECOVERED = "QualityRecovered"
EVENT_QUALITY_OK = "QualityOK"
EVENT_QUALITY_UNKNOWN = "QualityUnknown"

# Who Kiln says it is, in Events and approvals.
OPERATOR_NAME = "kiln-operator"
