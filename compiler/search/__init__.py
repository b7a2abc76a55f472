"""Student search: configuration, candidate space and cost filter, successive halving, selection, final
training, trial store, Pareto set."""

from ..core.search_options import SearchOptions
from .config import DEFAULT_WIDTHS, SearchConfig, as_options, resolve_config, validate_widths
from .executor import Executor, LocalExecutor, executor_names, get_executor, register_executor
from .pareto import pareto_front, plot_pareto
from .run import run_search
from .space import SkeletonSpec
from .state import Search

__all__ = [
    "DEFAULT_WIDTHS",
    "Executor",
    "LocalExecutor",
    "executor_names",
    "get_executor",
    "register_executor",
    "Search",
    "SearchConfig",
    "SearchOptions",
    "SkeletonSpec",
    "as_options",
    "pareto_front",
    "plot_pareto",
    "resolve_config",
    "run_search",
    "validate_widths",
]
