"""The Kiln API (`kiln.dev/v1alpha1`): pydantic models, the single source of truth.

The CRDs in `crds/` are generated from these models by `python -m kiln.api.crdgen`.
"""

from kiln.api.common import Condition, KilnModel
from kiln.api.model_deployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from kiln.api.model_version import ModelVersion, ModelVersionSpec, ModelVersionStatus
from kiln.api.training_job import TrainingJob, TrainingJobSpec, TrainingJobStatus
from kiln.api.wire import API_VERSION, GROUP, VERSION

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "KilnModel",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
]
