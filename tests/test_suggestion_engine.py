"""The engine refuses every answer that breaks the algorithm contract; the adapter reads Katib's objective type."""

from __future__ import annotations

import pytest

from katib_nas.proto import api_pb2
from katib_nas.runner.katib_messages import experiment_message
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.engine import AlgorithmFault
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.suggestion.service.convert import experiment_info

from .conftest import REPO, load_yaml
from .support.faulty_algorithm import FAULTS, AlgorithmBug, register_faults

CONTRACT_FAULTS = [key for key in FAULTS if not key.startswith("raises")]


@pytest.fixture(autouse=True)
def faults(monkeypatch: pytest.MonkeyPatch) -> None:
    register_faults(monkeypatch)


def faulty(key: str) -> ExperimentInfo:
    return ExperimentInfo(name="exp", algorithm=f"fault-{key}", settings={}, objective_metric="Validation-Accuracy")


@pytest.mark.parametrize("key", CONTRACT_FAULTS)
def test_an_answer_breaking_the_contract_is_an_algorithm_fault(key: str) -> None:
    """Wrong count, wrong names, an unsafe value, undecodable text: AlgorithmFault naming the algorithm."""
    with pytest.raises(AlgorithmFault) as info:
        engine.suggest(faulty(key), [], 2, 0)
    assert str(info.value).startswith(FAULTS[key].message)


def test_an_algorithm_that_raises_is_not_taken_for_bad_input() -> None:
    """The engine passes the algorithm's own exception on; only the service maps it (to INTERNAL)."""
    with pytest.raises(AlgorithmBug, match="index 7 out of range"):
        engine.suggest(faulty("raises"), [], 2, 0)


@pytest.mark.parametrize("objective_type, maximize", [(api_pb2.MINIMIZE, False), (api_pb2.MAXIMIZE, True)])
def test_objective_type_sets_maximize(objective_type: int, maximize: bool) -> None:
    """MINIMIZE is read as minimize and MAXIMIZE as maximize, whatever the example says."""
    experiment = experiment_message(api_pb2, experiment_from_document(
        load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml")))
    experiment.spec.objective.type = objective_type
    assert experiment_info(experiment).maximize is maximize


@pytest.mark.parametrize("count", [0, 2])
def test_a_request_for_no_suggestions_still_checks_the_experiment(count: int) -> None:
    """Katib's ValidateAlgorithmSettings path and a request for 0 suggestions refuse what GetSuggestions would."""
    from katib_nas.contract.errors import InvalidInput

    from .support.envelopenet import experiment

    with pytest.raises(InvalidInput, match="iterations"):
        engine.suggest(experiment({"iterations": "0"}), [], count, 0)
    assert engine.suggest(experiment(), [], 0, 0).assignments == []


@pytest.mark.parametrize("condition, read", [(0, "CREATED"), (5, "METRICSUNAVAILABLE"), (8, "UNKNOWN"),
                                             (1000, "UNKNOWN")])
def test_a_trial_condition_past_the_known_ones_reads_as_unknown(condition: int, read: str) -> None:
    from katib_nas.suggestion.core.experiment import CONDITIONS
    from katib_nas.suggestion.service.convert import trial_record

    trial = api_pb2.Trial(name="t")
    trial.status.condition = condition
    assert len(CONDITIONS) == 8 and trial_record(trial).condition == read
