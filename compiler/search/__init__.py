"""Student search: candidate space, cost filter, successive halving, trial store, Pareto set."""

from .halving import Search, SearchOptions, resolve_options, run_search
from .pareto import pareto_front, plot_pareto
from .space import DEFAULT_WIDTHS, Candidate, CandidateCost, SkeletonSpec, validate_widths

__all__ = ["DEFAULT_WIDTHS", "Candidate", "CandidateCost", "Search", "SearchOptions", "SkeletonSpec", "resolve_options", "pareto_front",
           "plot_pareto", "run_search", "validate_widths"]
