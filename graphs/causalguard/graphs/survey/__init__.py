"""The value survey: roles x steering conditions x inventory items, scored, checkpointed, resumable."""

from causalguard.graphs.survey.conditions import Condition, build_conditions
from causalguard.graphs.survey.results import SurveyResult, load_survey
from causalguard.graphs.survey.runner import SurveySettings, run_survey

__all__ = ["Condition", "SurveyResult", "SurveySettings", "build_conditions", "load_survey", "run_survey"]
